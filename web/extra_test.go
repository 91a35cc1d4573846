package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/web/store/storetest"
)

// TestExtraRoutes: Config.Extra mounts more handlers; "/" and "/j/{id}"
// replace the tier's own pages while the API stays the tier's; an Extra
// route over an API route is refused.
func TestExtraRoutes(t *testing.T) {
	leaktest.Check(t)
	st := storetest.Open(t, storetest.SQLiteDSN(t))
	mark := func(s string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s) })
	}
	_, err := New(Config{Site: testSite(), Store: st, Secret: testSecret, Logger: quietLogger(), Argon2: testArgon2,
		Extra: map[string]http.Handler{"/v1/lookup": mark("x")}})
	require.ErrorContains(t, err, "API route")

	srv, err := New(Config{Site: testSite(), Store: st, Secret: testSecret, Logger: slog.New(slog.DiscardHandler), Argon2: testArgon2,
		Extra: map[string]http.Handler{"/": mark("home"), "/j/{id}": mark("join"), "/x/": mark("x")}})
	require.NoError(t, err)
	defer srv.Close()
	for _, c := range []struct{ path, want string }{{"/", "home"}, {"/j/1234567890", "join"}, {"/x/y", "x"}, {"/nothing", "home"}} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
		require.Equal(t, c.want, rec.Body.String(), c.path)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/healthz", nil))
	require.Contains(t, rec.Body.String(), `"ok"`)
}
