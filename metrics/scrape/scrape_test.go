package scrape_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/metrics/scrape"
)

func TestFamilies(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# TYPE a_total counter\na_total{r=\"x\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n"))
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("a_total{ 3\n")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	fams, err := scrape.Families(srv.URL + "/ok")
	require.NoError(t, err)
	require.Equal(t, 3.0, fams["a_total"].GetMetric()[0].GetCounter().GetValue())
	require.Equal(t, dto.MetricType_HISTOGRAM, fams["h"].GetType())
	require.Equal(t, uint64(2), fams["h"].GetMetric()[0].GetHistogram().GetSampleCount())
	_, err = scrape.Families(srv.URL + "/bad")
	require.ErrorContains(t, err, "/bad")
	_, err = scrape.Families(srv.URL + "/missing")
	require.ErrorContains(t, err, "404")
}
