package protect

import "github.com/pion/transport/v5/replaydetector"

// Why a packet failed the replay check; written by replayWindow into the
// stream that owns it so Opener can count the two cases apart (pion/srtp
// reports both as one "duplicated" error).
const (
	rejNone uint8 = iota
	rejReplayed
	rejTooOld
)

// replayWindow is a sliding-window replay detector (RFC 3711 §3.3.2) over
// the 48-bit SRTP index or the 31-bit SRTCP index. It implements pion's
// allocation-free replaydetector.CheckAccepter (and ReplayDetector, which
// pion only uses when CheckAccepter is missing). Bit d of bits is set when
// index latest-d was accepted. Not safe for concurrent use: it belongs to
// one pion Context, itself guarded by its owner's mutex.
type replayWindow struct {
	latest  uint64
	started bool
	size    uint64
	bits    []uint64
	rej     *uint8
}

func newReplayWindow(size int, rej *uint8) *replayWindow {
	return &replayWindow{size: uint64(size), bits: make([]uint64, (size+63)/64), rej: rej}
}

func (w *replayWindow) bit(d uint64) bool { return w.bits[d/64]&(1<<(d%64)) != 0 }
func (w *replayWindow) set(d uint64)      { w.bits[d/64] |= 1 << (d % 64) }

// shift moves the window forward by n indexes.
func (w *replayWindow) shift(n uint64) {
	if n >= w.size {
		clear(w.bits)
		return
	}
	words, b := int(n/64), n%64
	for i := len(w.bits) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.bits[j] << b
			if b != 0 && j > 0 {
				v |= w.bits[j-1] >> (64 - b)
			}
		}
		w.bits[i] = v
	}
}

// CheckSeq implements replaydetector.CheckAccepter.
func (w *replayWindow) CheckSeq(seq uint64) replaydetector.Token {
	if !w.started || seq > w.latest {
		return replaydetector.Passed(seq)
	}
	d := w.latest - seq
	if d >= w.size {
		*w.rej = rejTooOld
		return replaydetector.Rejected(seq)
	}
	if w.bit(d) {
		*w.rej = rejReplayed
		return replaydetector.Rejected(seq)
	}
	return replaydetector.Passed(seq)
}

// Accept implements replaydetector.CheckAccepter.
func (w *replayWindow) Accept(tok replaydetector.Token) bool {
	if !tok.Passed() {
		return false
	}
	seq := tok.Seq()
	switch {
	case !w.started:
		w.started, w.latest = true, seq
		clear(w.bits)
		w.set(0)
		return true
	case seq > w.latest:
		w.shift(seq - w.latest)
		w.latest = seq
		w.set(0)
		return true
	}
	w.set(w.latest - seq)
	return false
}

// Check implements replaydetector.ReplayDetector (unused by pion when
// CheckAccepter is present; it allocates a closure).
func (w *replayWindow) Check(seq uint64) (func() bool, bool) {
	tok := w.CheckSeq(seq)
	return func() bool { return w.Accept(tok) }, tok.Passed()
}
