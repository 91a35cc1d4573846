// Package dashboard reads the metric names a Grafana dashboard
// (docs/grafana/openmmr.json) queries, with the Prometheus PromQL parser,
// so that each command's tests can check that its registry exports the
// names the dashboard charts. Only tests use it.
package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/openmmr/mmr/metrics/scrape"
)

// Path is the repository's dashboard, relative to a command's package
// directory (where go test runs).
const Path = "../../docs/grafana/openmmr.json"

// labelValues is Grafana's template query label_values(SELECTOR, LABEL),
// which is not PromQL: its selector is.
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// plainAlternatives is a __name__ regex that is a list of names
// (a_total|b_total): each name must then exist, not just one of them.
var plainAlternatives = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\|[a-zA-Z_:][a-zA-Z0-9_:]*)*$`)

// Names returns the sorted, distinct metric names the dashboard's PromQL
// expressions (panel targets, "expr") and template queries ("query")
// select: each vector selector's name, or each name of a
// {__name__=~"a|b"} list. Another __name__ matcher is an error: it names
// nothing a test could check.
func Names(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	names, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return names, nil
}

// Parse is Names on a dashboard's JSON text.
func Parse(b []byte) ([]string, error) {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	var exprs []string
	walk(doc, &exprs)
	if len(exprs) == 0 {
		return nil, errors.New("no expressions")
	}
	p := parser.NewParser(parser.Options{})
	seen := map[string]bool{}
	for _, e := range exprs {
		if m := labelValues.FindStringSubmatch(e); m != nil {
			e = m[1]
		}
		ast, err := p.ParseExpr(e)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		var bad error
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			if vs.Name != "" {
				seen[vs.Name] = true
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					continue
				}
				if (m.Type != labels.MatchRegexp && m.Type != labels.MatchEqual) || !plainAlternatives.MatchString(m.Value) {
					bad = fmt.Errorf("%q: __name__ %s %q is not a list of names", e, m.Type, m.Value)
					continue
				}
				for _, name := range strings.Split(m.Value, "|") {
					seen[name] = true
				}
			}
			return nil
		})
		if bad != nil {
			return nil, bad
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// walk collects the "expr" and "query" strings of a decoded JSON document
// (a datasource variable's query, "prometheus", is a type, not PromQL).
func walk(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "query" && v["type"] == "query") {
				*out = append(*out, s)
				continue
			}
			walk(x, out)
		}
	case []any:
		for _, x := range v {
			walk(x, out)
		}
	}
}

// Owner is the binary whose registry exports name, by its prefix: "mmr",
// "zc", "web" or "ht" (metrics/prom's prefixes); "" for the Go runtime and
// process families (go_*, process_*), which every binary exports; "?" for
// anything else.
func Owner(name string) string {
	prefix, _, _ := strings.Cut(name, "_")
	switch prefix {
	case "mmr", "zc", "web", "ht":
		return prefix
	case "go", "process":
		return ""
	}
	return "?"
}

// Missing returns the names that no family in fams provides: a counter or
// gauge of that name, or a histogram's name_bucket, name_sum or
// name_count series.
func Missing(names []string, fams map[string]*dto.MetricFamily) []string {
	var out []string
	for _, n := range names {
		if _, ok := fams[n]; ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := fams[strings.TrimSuffix(n, suffix)]; ok && strings.HasSuffix(n, suffix) && f.GetType() == dto.MetricType_HISTOGRAM {
				found = true
			}
		}
		if !found {
			out = append(out, n)
		}
	}
	return out
}

// OwnedBy returns the names Owner gives to one of owners.
func OwnedBy(names []string, owners ...string) []string {
	var out []string
	for _, n := range names {
		if slices.Contains(owners, Owner(n)) {
			out = append(out, n)
		}
	}
	return out
}

// MissingFrom scrapes url (a /metrics endpoint), parses it with the
// Prometheus text parser, and returns the names of the dashboard at path
// owned by owner (and by "", the runtime families) that it lacks. An
// owner the dashboard does not query at all is an error.
func MissingFrom(path, url, owner string) ([]string, error) {
	names, err := Names(path)
	if err != nil {
		return nil, err
	}
	if len(OwnedBy(names, owner)) == 0 {
		return nil, fmt.Errorf("%s queries no %s_ metric", path, owner)
	}
	fams, err := scrape.Families(url)
	if err != nil {
		return nil, err
	}
	return Missing(OwnedBy(names, owner, ""), fams), nil
}
