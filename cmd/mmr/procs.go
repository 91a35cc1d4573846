package main

import (
	"log/slog"
	"os"
	"runtime"

	"github.com/openmmr/mmr/router"
)

// raiseGOMAXPROCS gives the process one P per CPU beside the router's
// blocking UDP readers, so that the readers can keep their P while they
// sleep in recvmmsg (router.Config.ReadMode, ingress.Socket.SetHoldP): about
// half the CPU per packet at light load. A reader holding a P is asleep in
// the kernel, so the extra Ps do not run more Go code at once than there are
// CPUs while the readers wait. A GOMAXPROCS environment variable wins.
func raiseGOMAXPROCS(cfg router.Config, log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := router.Readers(cfg)
	if n == 0 {
		return
	}
	want := runtime.NumCPU() + n
	if runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
		log.Debug("mmr: GOMAXPROCS raised beside the UDP readers", "gomaxprocs", want, "readers", n)
	}
}
