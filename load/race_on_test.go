//go:build race

package load_test

// raceOn: the race detector slows the in-process router, control server
// and load engine about tenfold; the bar-sized runs go to the non-race job
// (see TestConference, TestWebinar).
const raceOn = true
