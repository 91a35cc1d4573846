// Package scrape reads a Prometheus /metrics endpoint the way Prometheus
// does: an HTTP GET parsed with the text parser of
// github.com/prometheus/common/expfmt. The load tool reads the router's
// counters with it and the commands' tests their own metrics. It depends
// on nothing of openmmr, so a client binary may use it.
package scrape

import (
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Timeout bounds one scrape: Prometheus' own default scrape timeout.
const Timeout = 10 * time.Second

// Families GETs url and returns its metric families by name. A status
// other than 200 or a body the text parser refuses is an error.
func Families(url string) (map[string]*dto.MetricFamily, error) {
	c := &http.Client{Timeout: Timeout}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return fams, nil
}
