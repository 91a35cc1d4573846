package metrics

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriter(t *testing.T) {
	var b strings.Builder
	w := NewWriter(&b)
	w.One("mmr_meetings", "Meetings hosted.", Gauge, 3)
	w.Family("mmr_drops_total", "Dropped packets by reason.", Counter)
	w.Sample("mmr_drops_total", 7, "reason", "bad_token")
	w.Sample("mmr_drops_total", 0, "reason", "oversize", "dangling")
	require.NoError(t, w.Flush())
	require.Equal(t, `# HELP mmr_meetings Meetings hosted.
# TYPE mmr_meetings gauge
mmr_meetings 3
# HELP mmr_drops_total Dropped packets by reason.
# TYPE mmr_drops_total counter
mmr_drops_total{reason="bad_token"} 7
mmr_drops_total{reason="oversize"} 0
`, b.String())
}
