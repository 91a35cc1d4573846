// Package docvec reads and checks the test-vector blocks of
// docs/PROTOCOL.md, so that the document's vectors are the ones the code
// computes. A block is a marker line (an HTML comment naming the test that
// checks it) followed by a fenced block of "name value" lines:
//
//	<!-- bind test vectors: checked by wire TestBindVectorsInProtocolDoc -->
//	```
//	token                00112233445566778899aabbccddeeff
//	```
//
// For tests only; every function is safe for concurrent use.
package docvec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Block formats vectors (name, value pairs) as the block to paste after
// marker.
func Block(marker string, vectors [][2]string) string {
	var b strings.Builder
	b.WriteString(marker + "\n```\n")
	for _, kv := range vectors {
		fmt.Fprintf(&b, "%-20s %s\n", kv[0], kv[1])
	}
	b.WriteString("```\n")
	return b.String()
}

// Read returns the vectors of the block after marker in the file at path,
// failing t if there is no such marker.
func Read(t testing.TB, path, marker string) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.Index(doc, []byte(marker))
	require.GreaterOrEqual(t, i, 0, "marker %q missing in %s", marker, path)
	found := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(doc[i+len(marker):]))
	sc.Scan() // rest of the marker line
	sc.Scan() // opening fence
	for sc.Scan() && sc.Text() != "```" {
		name, val, _ := strings.Cut(sc.Text(), " ")
		found[name] = strings.TrimSpace(val)
	}
	return found
}

// Check fails t unless the block after marker in the file at path holds
// exactly vectors; the message shows the block to paste. With the
// environment variable env set to a file name, the block is also written
// there.
func Check(t testing.TB, path, marker string, vectors [][2]string, env string) map[string]string {
	t.Helper()
	blk := Block(marker, vectors)
	if out := os.Getenv(env); out != "" {
		require.NoError(t, os.WriteFile(out, []byte(blk), 0o644))
	}
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(doc), marker, "marker missing; the block is:\n%s", blk)
	found := Read(t, path, marker)
	for _, kv := range vectors {
		require.Equal(t, kv[1], found[kv[0]], "vector %s; the block is:\n%s", kv[0], blk)
	}
	require.Len(t, found, len(vectors), "extra lines in the doc block:\n%s", blk)
	return found
}
