package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
)

// The parent ↔ child line protocol, one request and one reply per line:
//
//	parent: start <childSpec as JSON>   child: ok <address it listens on> | err <message>
//	parent: usage                       child: usage <cpu ns> <mallocs> <alloc bytes> | err <message>
//	parent: streams                     child: streams <stream address> <fingerprint|-> <token>... | err <message>
//	parent: drops                       child: drops <count> | err <message>
//	parent: gso                         child: gso <super-packets> <fallbacks> | err <message>
//	parent: readers                     child: readers <packets in>... (one per router reader) | err <message>
//	parent: quit                        child: bye
//
// "streams" (impls tcp and tls only) tells the parent where its stream
// subscribers connect (the router's TCP listener, or the child's TLS
// listener), the SHA-256 fingerprint of the child's self-signed certificate
// to pin (tls; "-" for tcp), and the media token of each stream subscriber
// participant, in order, as 32 hex digits (see parseStreams). "drops"
// (router impls only) is the router's total drop count (router.Stats);
// "gso" (router impls only) its UDP GSO super-packets sent and runs that fell
// back to one message per copy (gso_child_test.go).
//
// "usage" is answered without allocating (the reply is formatted into a
// reused buffer), so that reading the counters does not disturb the
// allocation count it reports. End of stdin (the parent died) stops the
// forwarder and exits the child like quit.

// Names of the forwarding implementations (childSpec.Impl).
const (
	implFloor = "floor" // least possible recvmmsg/sendmmsg loop (fwd_floor_linux_test.go)
	// implFloorHeld is floor with raw system calls that keep the P while
	// it waits, as the router's readers (light-load rows).
	implFloorHeld = "floor-held"
	implMMR       = "mmr"      // the router, blocking reads (fwd_mmr_test.go)
	implMMRPoll   = "mmr-poll" // the router, netpoller reads
	// implMMRNoDSCP is the router with DSCP marking disabled: the cost of
	// the per-copy IP_TOS control message, for information.
	implMMRNoDSCP = "mmr-nodscp"
	// implMMRNoGSO is the router with Config.DisableGSO: one message per
	// copy, the router's plain path (fwd_mmr_test.go).
	implMMRNoGSO = "mmr-nogso"
	// implMMRNoCoalesce is the router with Config.Coalesce off: every
	// packet wakes the reader, at every rate (light-load rows).
	implMMRNoCoalesce = "mmr-nocoalesce"
	implNaive         = "naive" // ReadFromUDPAddrPort + one WriteToUDPAddrPort per subscriber
	// implTCP and implTLS are the router (as mmr) with the subscribers on
	// stream transports (fwd_stream_test.go): RFC 4571 framed over TCP
	// (the router's TCP listener), or over TLS (a listener in the child
	// handing its connections to Router.ServeStream). The publisher stays
	// on UDP.
	implTCP = "tcp"
	implTLS = "tls"
	// implWS is the router with the subscribers on the web client's media
	// WebSockets over TLS (fwd_ws_test.go: webclient.Handler bridging each
	// WebSocket into Router.ServeStream), as browsers receive media.
	implWS = "ws"
	// implWT is the router with the subscribers on the web client's
	// WebTransport sessions (fwd_wt_test.go: webclient.WebTransport
	// bridging each session's datagrams into Router.ServeStream), as
	// browsers receive media when UDP 443 is open.
	implWT = "wt"
)

// isStreamImpl reports whether impl's subscribers are stream clients
// (childSpec.Streams) rather than UDP sockets (childSpec.Subs).
func isStreamImpl(impl string) bool {
	return impl == implTCP || impl == implTLS || impl == implWS || impl == implWT
}

// isRouterImpl reports whether impl runs the router, which answers "drops".
func isRouterImpl(impl string) bool {
	switch impl {
	case implMMR, implMMRPoll, implMMRNoDSCP, implMMRNoGSO, implMMRNoCoalesce, implTCP, implTLS, implWS, implWT:
		return true
	}
	return false
}

// maxStreams bounds childSpec.Streams: one token per stream subscriber goes
// in the "streams" reply line (33 bytes each), and the router's defaults
// are sized for far fewer streams from one address.
const maxStreams = 1024

// childSpec is what the parent asks the child to run.
type childSpec struct {
	Impl string `json:"impl"`
	// Pub is the publisher's socket address, the source of every packet.
	Pub netip.AddrPort `json:"pub"`
	// Subs are the subscribers' socket addresses, each to receive a copy of
	// every packet (UDP impls).
	Subs []netip.AddrPort `json:"subs"`
	// Streams (impls tcp and tls, instead of Subs) is the number of stream
	// subscriber participants the child creates; the parent connects and
	// binds them with the tokens of the "streams" reply.
	Streams int `json:"streams"`
	// SSRC is the publisher's RTP SSRC (published in the router for mmr).
	SSRC uint32 `json:"ssrc"`
	// IdleMeetings (mmr only) adds that many meetings beside the measured
	// one, each with IdleParticipants participants bound to fixed addresses
	// nobody sends from.
	IdleMeetings     int `json:"idleMeetings"`
	IdleParticipants int `json:"idleParticipants"`
	// Shards (router impls) is router.Config.Shards; 0 means 1.
	Shards int `json:"shards"`
	// More (router impls) adds meetings of their own publisher and UDP
	// subscribers beside the measured one (shards_test.go).
	More []pubGroup `json:"more"`
}

// validate reports a spec no forwarder can run.
func (s childSpec) validate() error {
	var errs []error
	if !s.Pub.IsValid() {
		errs = append(errs, errors.New("bench: publisher address missing"))
	}
	switch {
	case isStreamImpl(s.Impl):
		if len(s.Subs) != 0 || s.Streams < 1 || s.Streams > maxStreams {
			errs = append(errs, fmt.Errorf("bench: %s wants 1 to %d stream subscribers and no UDP ones, got %d and %d",
				s.Impl, maxStreams, s.Streams, len(s.Subs)))
		}
	case len(s.Subs) == 0:
		errs = append(errs, errors.New("bench: no subscribers"))
	case s.Streams != 0:
		errs = append(errs, fmt.Errorf("bench: %s has no stream subscribers", s.Impl))
	}
	for _, a := range s.Subs {
		if !a.IsValid() || !a.Addr().Is4() {
			errs = append(errs, fmt.Errorf("bench: subscriber address %v is not IPv4", a))
		}
	}
	if s.IdleMeetings < 0 || s.IdleParticipants < 0 || s.IdleMeetings*s.IdleParticipants > 1<<20 {
		errs = append(errs, fmt.Errorf("bench: idle meetings %d x %d out of range", s.IdleMeetings, s.IdleParticipants))
	}
	return errors.Join(errs...)
}

// forwarder is one running implementation inside the child. Close is
// idempotent and ends every goroutine the forwarder started.
type forwarder interface {
	Addr() netip.AddrPort
	Close() error
}

// newForwarder starts the implementation named by spec.Impl.
func newForwarder(spec childSpec, log *slog.Logger) (forwarder, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	switch spec.Impl {
	case implFloor, implFloorHeld:
		return newFloor(spec.Subs, spec.Impl == implFloorHeld)
	case implNaive:
		return newNaive(spec.Subs)
	case implMMR, implMMRPoll, implMMRNoDSCP, implMMRNoGSO, implMMRNoCoalesce, implTCP, implTLS, implWS, implWT:
		return newMMR(spec, log)
	}
	return nil, fmt.Errorf("bench: unknown impl %q (want %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s or %s)",
		spec.Impl, implFloor, implFloorHeld, implMMR, implMMRPoll, implMMRNoDSCP, implMMRNoGSO, implMMRNoCoalesce, implNaive, implTCP, implTLS, implWS, implWT)
}

// streamer is a forwarder with stream subscribers (impls tcp and tls).
type streamer interface {
	Streams() streamInfo
}

// dropCounter is a forwarder that counts the copies it drops (the router).
type dropCounter interface {
	Drops() uint64
}

// maxControlLine bounds one control line: a start spec with 200 subscribers
// is about 5 KB; 1 MiB leaves room for any sweep.
const maxControlLine = 1 << 20

// childServer runs the child's side of the protocol. Not safe for concurrent
// use: one goroutine (runChild's) owns it.
type childServer struct {
	r     *bufio.Reader
	w     io.Writer
	log   *slog.Logger
	fw    forwarder
	reply []byte           // reused reply buffer
	ms    runtime.MemStats // reused so that usage does not allocate
}

// runChild serves the protocol on in/out until quit or end of input and
// returns the process exit code. Logs go to logw.
func runChild(in io.Reader, out, logw io.Writer) int {
	c := &childServer{
		r:     bufio.NewReaderSize(in, maxControlLine),
		w:     out,
		log:   slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})),
		reply: make([]byte, 0, 128),
	}
	defer c.stop()
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			c.log.Error("bench child: reading control line", "err", err)
			return 1
		}
		cmd, arg, _ := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
		switch string(cmd) {
		case "start":
			c.start(arg)
		case "usage":
			c.usage()
		case "streams":
			c.streams()
		case "drops":
			c.drops()
		case "gso":
			c.gsoReply()
		case "readers":
			c.readersReply()
		case "quit":
			c.stop()
			c.write("bye")
			return 0
		default:
			c.write("err unknown command " + strconv.Quote(string(cmd)))
		}
	}
}

func (c *childServer) start(arg []byte) {
	if c.fw != nil {
		c.write("err already started")
		return
	}
	var spec childSpec
	if err := json.Unmarshal(arg, &spec); err != nil {
		c.write("err bad spec: " + err.Error())
		return
	}
	fw, err := newForwarder(spec, c.log)
	if err != nil {
		c.write("err " + err.Error())
		return
	}
	c.fw = fw
	c.write("ok " + fw.Addr().String())
}

// usage answers the process CPU time and allocation counters without
// allocating. CPU time is read first: ReadMemStats stops the world and its
// cost then falls after the reading.
func (c *childServer) usage() {
	cpu, err := processCPU()
	if err != nil {
		c.write("err " + err.Error())
		return
	}
	runtime.ReadMemStats(&c.ms)
	b := append(c.reply[:0], "usage "...)
	b = strconv.AppendUint(b, cpu, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, c.ms.Mallocs, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, c.ms.TotalAlloc, 10)
	b = append(b, '\n')
	c.reply = b
	if _, err := c.w.Write(b); err != nil {
		c.log.Error("bench child: writing reply", "err", err)
	}
}

// streams answers the stream subscribers' address, pin and tokens.
func (c *childServer) streams() {
	s, ok := c.fw.(streamer)
	if !ok {
		c.write("err no stream subscribers")
		return
	}
	c.write(s.Streams().line())
}

// drops answers the router's drop count.
func (c *childServer) drops() {
	d, ok := c.fw.(dropCounter)
	if !ok {
		c.write("err no drop counter")
		return
	}
	c.write("drops " + strconv.FormatUint(d.Drops(), 10))
}

func (c *childServer) stop() {
	if c.fw == nil {
		return
	}
	if err := c.fw.Close(); err != nil {
		c.log.Error("bench child: closing forwarder", "err", err)
	}
	c.fw = nil
}

// write sends one reply line; newlines inside s (multi-line errors) are
// flattened so that the reply stays one line.
func (c *childServer) write(s string) {
	s = strings.ReplaceAll(s, "\n", "; ")
	if _, err := io.WriteString(c.w, s+"\n"); err != nil {
		c.log.Error("bench child: writing reply", "err", err)
	}
}
