package webclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"time"

	"github.com/coder/websocket"
)

// pipeConn is the server end of the in-memory pipe a WebSocket is bridged
// to: a net.Conn with real deadlines (net.Pipe's) whose addresses are the
// browser's TCP connection's, so the control server's per-IP limits and the
// router's mapped address see the browser.
type pipeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

// controlConn is what control.Server.HandleConn gets: a connection whose
// "TLS" is already terminated (the browser's TLS ends in the HTTP server),
// so HandleConn uses it as is (control's terminatedConn).
type controlConn struct{ *pipeConn }

// Handshake is a no-op: the TLS handshake happened in the HTTP server.
func (c controlConn) Handshake() error { return nil }

// CloseWrite ends the server's side. Everything written before has been
// taken by the bridge (net.Pipe writes are synchronous), which sends it and
// then closes the WebSocket normally.
func (c controlConn) CloseWrite() error { return c.pipeConn.Close() }

// NetConn returns the connection itself (deadlines and the final Close).
func (c controlConn) NetConn() net.Conn { return c.pipeConn }

// framing says how a bridge turns WebSocket messages into the stream
// protocol's frames and back.
type framing struct {
	hdr      int                   // length prefix: 4 (control, big-endian uint32) or 2 (RFC 4571)
	msgType  websocket.MessageType // the only message type accepted and sent
	maxIn    int                   // largest message accepted from the browser
	maxOut   int                   // largest frame accepted from the server
	writeTTL time.Duration         // bound on one WebSocket write
	count    func(reason string)   // counts a cut-off
}

// Cut-off reasons of a bridged WebSocket (Stats.Cut).
const (
	CutTooLarge  = "too_large"  // a message above the endpoint's size cap
	CutWrongType = "wrong_type" // text on media, binary on control
	CutEmpty     = "empty"      // an empty message (no frame has length 0)
)

// pump copies browser messages into the pipe as frames and frames from the
// pipe into messages until either side ends, then closes both. It runs on
// the HTTP handler's goroutine (the hijacked connection's).
func (f framing) pump(ctx context.Context, ws *websocket.Conn, a net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		f.toBrowser(ctx, ws, a)
	}()
	status, reason := f.fromBrowser(ctx, ws, a)
	cancel() // before the pipe closes: toBrowser must not close the WebSocket normally
	a.Close()
	<-done
	if status != 0 {
		_ = ws.Close(status, reason)
	}
	ws.CloseNow()
}

// fromBrowser reads messages until an error; it returns the close status to
// send (0 when the WebSocket is already done).
func (f framing) fromBrowser(ctx context.Context, ws *websocket.Conn, a net.Conn) (websocket.StatusCode, string) {
	buf := make([]byte, f.hdr+f.maxIn+1)
	for {
		typ, r, err := ws.Reader(ctx)
		if err != nil {
			return 0, ""
		}
		if typ != f.msgType {
			f.count(CutWrongType)
			return websocket.StatusUnsupportedData, "wrong message type"
		}
		n, err := io.ReadFull(r, buf[f.hdr:])
		if n > f.maxIn {
			f.count(CutTooLarge)
			return websocket.StatusMessageTooBig, "message too large"
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return 0, ""
		}
		if n == 0 {
			f.count(CutEmpty)
			return websocket.StatusPolicyViolation, "empty message"
		}
		if f.hdr == 4 {
			binary.BigEndian.PutUint32(buf, uint32(n))
		} else {
			binary.BigEndian.PutUint16(buf, uint16(n))
		}
		if _, err := a.Write(buf[:f.hdr+n]); err != nil {
			return websocket.StatusNormalClosure, ""
		}
	}
}

// toBrowser reads frames from the server and sends each as one message.
// When the server closes its end, the WebSocket is closed normally after
// what it wrote.
func (f framing) toBrowser(ctx context.Context, ws *websocket.Conn, pipe net.Conn) {
	// One pipe Write (a frame, or a batch of them) is taken in one Read:
	// net.Pipe hands bytes over synchronously, one handoff per Read.
	a := bufio.NewReaderSize(pipe, 16<<10)
	hdr := make([]byte, f.hdr)
	buf := make([]byte, 0, 2048)
	for {
		if _, err := io.ReadFull(a, hdr); err != nil {
			if ctx.Err() == nil {
				_ = ws.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		var n int
		if f.hdr == 4 {
			n = int(binary.BigEndian.Uint32(hdr))
		} else {
			n = int(binary.BigEndian.Uint16(hdr))
		}
		if n > f.maxOut {
			_ = ws.Close(websocket.StatusInternalError, "server frame too large")
			return
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(a, buf); err != nil {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, f.writeTTL)
		err := ws.Write(wctx, f.msgType, buf)
		cancel()
		if err != nil {
			return
		}
	}
}
