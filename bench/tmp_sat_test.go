package bench

import (
	"fmt"
	"testing"
)

func BenchmarkTmpSat(b *testing.B) {
	for _, vs := range [][2]string{{implMMRNoGSO, implCFloor}, {implMMRNoGSO, implMMRNoDSCP}} {
		for _, size := range []int{200, 1200} {
			runPaired(b, fmt.Sprintf("%s-vs-%s/size=%d", vs[0], vs[1], size),
				scenario{impl: vs[0], subs: 50, size: size}, scenario{impl: vs[1], subs: 50, size: size}, closedLoop(windowFor(50)), sliceFor(50))
		}
	}
}

func BenchmarkTmpProf(b *testing.B) {
	sc := scenario{impl: implMMRNoGSO, subs: 50, size: 200}
	runBench(b, "nogso", sc, closedLoop(windowFor(50)))
}
