package logflag_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/logflag"
)

// TestFlags: the flags parse, reject bad values at parse time, and the
// logger writes the chosen format at the chosen level.
func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		err   string
		check func(t *testing.T, out string)
	}{
		{name: "defaults", check: func(t *testing.T, out string) {
			require.Equal(t, "level=INFO msg=hello k=v\nlevel=WARN msg=careful\n", stripTime(out))
		}},
		{name: "json debug", args: []string{"-log-format", "json", "-log-level", "debug"}, check: func(t *testing.T, out string) {
			sc := bufio.NewScanner(strings.NewReader(out))
			var msgs []string
			for sc.Scan() {
				var m map[string]any
				require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
				require.Contains(t, m, "time")
				msgs = append(msgs, m["level"].(string)+" "+m["msg"].(string))
			}
			require.Equal(t, []string{"DEBUG detail", "INFO hello", "WARN careful"}, msgs)
		}},
		{name: "warn", args: []string{"-log-level", "warn"}, check: func(t *testing.T, out string) {
			require.Equal(t, "level=WARN msg=careful\n", stripTime(out))
		}},
		{name: "bad format", args: []string{"-log-format", "xml"}, err: "want text or json"},
		{name: "bad level", args: []string{"-log-level", "loud"}, err: "log-level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			lf := logflag.Add(fs)
			err := fs.Parse(tc.args)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			var b bytes.Buffer
			log := lf.New(&b)
			log.Debug("detail")
			log.Info("hello", "k", "v")
			log.Warn("careful")
			tc.check(t, b.String())
		})
	}
}

// TestZeroValue: a Flags never parsed logs text at info.
func TestZeroValue(t *testing.T) {
	var b bytes.Buffer
	(&logflag.Flags{}).New(&b).Debug("hidden")
	(&logflag.Flags{}).New(&b).Info("shown")
	require.Equal(t, "level=INFO msg=shown\n", stripTime(b.String()))
}

// stripTime drops the time= field slog's text handler starts lines with.
func stripTime(s string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if _, rest, ok := strings.Cut(l, " "); ok && strings.HasPrefix(l, "time=") {
			l = rest
		}
		out.WriteString(l)
	}
	return out.String()
}
