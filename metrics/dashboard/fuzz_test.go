package dashboard_test

import (
	"os"
	"testing"

	"github.com/openmmr/mmr/metrics/dashboard"
)

// FuzzParse: any bytes give names or an error, never a panic; the names
// come sorted and distinct.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(dashboard.Path); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"panels":[{"targets":[{"expr":"sum(rate({__name__=~\"a|b\"}[1m]))"}]}]}`))
	f.Add([]byte(`{"templating":{"list":[{"type":"query","query":"label_values(up, job)"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := dashboard.Parse(b)
		if err != nil {
			return
		}
		for i := 1; i < len(names); i++ {
			if names[i-1] >= names[i] {
				t.Fatalf("not sorted and distinct: %q", names)
			}
		}
	})
}
