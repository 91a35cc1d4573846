package web

import (
	"html/template"
	"net/http"
)

// The browser pages: https://HOST/ answers in a browser, and the web
// client URL of a meeting (/j/ID) says how to join it until a web client
// exists.
var (
	homePage = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><title>openmmr</title>
<h1>openmmr</h1>
<p>This is an openmmr web tier. Clients look meetings up with <code>POST /v1/lookup</code>;
the meetings API is under <code>/v1/meetings</code> (docs/PROTOCOL.md, "Web tier").</p>
</html>
`))
	joinPage = template.Must(template.New("join").Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><title>Join meeting {{.ID}}</title>
<h1>Meeting {{.ID}}</h1>
<p>Join with the openmmr client:</p>
<pre>go run ./cmd/openmmr join -web https://{{.Host}} -passcode PASSCODE {{.ID}}</pre>
</html>
`))
)

func (s *Server) handleHome(w http.ResponseWriter, r *http.Request) {
	page(w, homePage, nil)
}

func (s *Server) handleJoinPage(w http.ResponseWriter, r *http.Request) {
	id, ok := s.pathID(w, r)
	if !ok {
		return
	}
	page(w, joinPage, struct{ ID, Host string }{id, r.Host})
}

func page(w http.ResponseWriter, t *template.Template, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	_ = t.Execute(w, data)
}
