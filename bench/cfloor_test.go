package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// implCFloor is the C floor: testdata/cfloor.c, a recvmmsg/sendmmsg loop in
// C compiled with the system C compiler, run as the child process in place
// of the test binary. It is the kernel's own cost, free of any Go runtime
// (scheduler, sysmon, GC), and the reference every ratio is stated against.
const implCFloor = "cfloor"

// implCFloorGSO is the C floor with UDP GSO (the program's "gso" mode):
// each run of equal-size packets in a read batch (a video frame) goes to
// each subscriber as one UDP_SEGMENT super-packet. The floor of what the
// router's GSO can reach.
const implCFloorGSO = "cfloor-gso"

// isCFloor reports whether impl runs the C program.
func isCFloor(impl string) bool { return impl == implCFloor || impl == implCFloorGSO }

// cfloorArgs returns the C floor's command-line arguments for impl.
func cfloorArgs(impl string) []string {
	if impl == implCFloorGSO {
		return []string{"gso"}
	}
	return nil
}

// cfloorSource is the C floor's source, relative to the package directory
// (go test runs in it).
const cfloorSource = "testdata/cfloor.c"

// cfloorBuild compiles the C floor once per test process (the benchmarks
// start many children). Its result is the binary's path, or why there is
// none (no C compiler, not Linux), which callers report as a skip.
var cfloorBuild = sync.OnceValues(buildCFloor)

// buildCFloor compiles cfloorSource with cc -O2 into the user cache
// directory, named by a hash of the source and the compiler's version so
// that a changed source or compiler rebuilds it; the rename makes the
// result appear whole to concurrent test processes.
func buildCFloor() (string, error) {
	if runtime.GOOS != "linux" {
		return "", fmt.Errorf("the C floor needs Linux (recvmmsg/sendmmsg), not %s", runtime.GOOS)
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", fmt.Errorf("no C compiler (cc) on PATH to build the C floor: %w", err)
	}
	src, err := os.ReadFile(cfloorSource)
	if err != nil {
		return "", err
	}
	ver, err := exec.Command(cc, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", cc, err)
	}
	sum := sha256.Sum256(append(src, ver...))
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "openmmr-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "cfloor-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	var stderr bytes.Buffer
	cmd := exec.Command(cc, "-O2", "-Wall", "-Werror", "-pthread", "-o", tmp, cfloorSource)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("bench: compiling %s: %w\n%s", cfloorSource, err, stderr.String())
	}
	return bin, os.Rename(tmp, bin)
}

// cfloorSkip returns why the C floor cannot run here, or "".
func cfloorSkip() string {
	if _, err := cfloorBuild(); err != nil {
		return err.Error()
	}
	return ""
}

// cfloorStartLine is the C floor's start request: "start <n> <addr>...".
func cfloorStartLine(spec childSpec) (string, error) {
	if !isCFloor(spec.Impl) || len(spec.Subs) == 0 || spec.Streams != 0 || spec.IdleMeetings != 0 {
		return "", fmt.Errorf("bench: the C floor forwards to UDP subscribers only, got %+v", spec)
	}
	if err := spec.validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("start ")
	b.WriteString(strconv.Itoa(len(spec.Subs)))
	for _, s := range spec.Subs {
		b.WriteByte(' ')
		b.WriteString(s.String())
	}
	return b.String(), nil
}
