package bench

import (
	"os"
	"testing"
)

// childEnv is the environment variable that turns the test binary into a
// forwarder child (see child_test.go): the parent re-executes itself with
// childEnv=1 and talks to the child over stdin/stdout.
const childEnv = "OPENMMR_BENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
