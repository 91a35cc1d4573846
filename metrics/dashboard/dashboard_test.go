package dashboard_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/metrics/dashboard"
)

// TestRepositoryDashboard: the repository's dashboard parses, every name
// it queries belongs to a binary (each command's tests check their own),
// and it covers each binary.
func TestRepositoryDashboard(t *testing.T) {
	names, err := dashboard.Names(dashboard.Path)
	require.NoError(t, err)
	owners := map[string]int{}
	for _, n := range names {
		require.NotEqual(t, "?", dashboard.Owner(n), "%s has no binary", n)
		owners[dashboard.Owner(n)]++
	}
	for _, o := range []string{"mmr", "zc", "web", "ht", ""} {
		require.Positive(t, owners[o], "no %q metric on the dashboard", o)
	}
	require.Contains(t, names, "mmr_control_join_seconds_bucket")
	require.Contains(t, names, "zc_mmrs")
	require.Contains(t, names, "process_cpu_seconds_total", "from the template query")
}

func write(t *testing.T, doc string) string {
	p := filepath.Join(t.TempDir(), "d.json")
	require.NoError(t, os.WriteFile(p, []byte(doc), 0o600))
	return p
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
		err       string
	}{
		{"selectors and functions", `{"panels":[{"targets":[{"expr":"histogram_quantile(0.5, sum by (le) (rate(a_seconds_bucket{job=~\"$job\"}[5m])))"},
			{"expr":"rate(b_total[1m]) / on(instance) c"}]}]}`, []string{"a_seconds_bucket", "b_total", "c"}, ""},
		{"name list", `{"panels":[{"targets":[{"expr":"sum(rate({__name__=~\"x_total|y_total\",job=\"j\"}[1m]))"}]}]}`, []string{"x_total", "y_total"}, ""},
		{"template query", `{"templating":{"list":[{"type":"datasource","query":"prometheus"},{"type":"query","query":"label_values(up{job=~\"$job\"}, instance)"}]}}`, []string{"up"}, ""},
		{"name pattern", `{"panels":[{"targets":[{"expr":"{__name__=~\"mmr_.*\"}"}]}]}`, nil, "not a list of names"},
		{"bad promql", `{"panels":[{"targets":[{"expr":"rate(x[1m]"}]}]}`, nil, "rate(x[1m]"},
		{"no expressions", `{"panels":[]}`, nil, "no expressions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dashboard.Names(write(t, tc.doc))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestMissing(t *testing.T) {
	counter, hist := dto.MetricType_COUNTER, dto.MetricType_HISTOGRAM
	fams := map[string]*dto.MetricFamily{"a_total": {Type: &counter}, "h_seconds": {Type: &hist}, "c_total": {Type: &counter}}
	require.Equal(t, []string{"b_total", "c_total_bucket"},
		dashboard.Missing([]string{"a_total", "b_total", "h_seconds_bucket", "h_seconds_count", "c_total_bucket"}, fams))
	require.Equal(t, []string{"mmr_x", "go_y"}, dashboard.OwnedBy([]string{"mmr_x", "zc_x", "go_y", "other"}, "mmr", ""))
	require.True(t, strings.HasSuffix(dashboard.Path, "openmmr.json"))
}
