// Package bench holds the media-plane benchmarks of openmmr: the fan-out cost
// of the router (impl mmr and mmr-poll) against a plain Go loop (naive) and
// the least possible recvmmsg/sendmmsg loop (floor), and the router with
// its subscribers on TCP or TLS media streams (tcp, tls), over real loopback
// sockets, with the forwarder running in a child process so that only its CPU
// time is measured. Everything lives in the package's test files; this file
// only names the package. See README.md for how to run and read the results.
package bench
