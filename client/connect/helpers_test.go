package connect_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
)

const (
	meetingID     = "1234567890"
	e2eeMeetingID = "5550001111" // created end-to-end encrypted
)

var joinSecret = []byte("connect-test-join-secret-0123456789")

// testLogger logs at info to the test output when -v, else nowhere.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is a running system: zones and a web tier.
type env struct {
	zones []*connecttest.Zone
	web   *connecttest.Web
}

func startEnv(t *testing.T, nzones int) *env { return startEnvN(t, nzones) }

func startEnvTB(b testing.TB) *env { return startEnvN(b, 1) }

func startEnvN(t testing.TB, nzones int) *env {
	t.Helper()
	e := &env{}
	var lz []connect.LookupZone
	for i := range nzones {
		z, err := connecttest.StartZone(connecttest.ZoneConfig{Name: string(rune('a'+i)) + "zone", JoinSecret: joinSecret, Logger: testLogger(t)})
		require.NoError(t, err)
		t.Cleanup(z.Close)
		e.zones = append(e.zones, z)
		lz = append(lz, z.LookupZone())
	}
	w, err := connecttest.StartWeb(connecttest.WebConfig{JoinSecret: joinSecret, Meetings: map[string]string{meetingID: "4242"},
		E2EEMeetings: map[string]string{e2eeMeetingID: "4343"}, Zones: lz})
	require.NoError(t, err)
	t.Cleanup(w.Close)
	e.web = w
	return e
}

// receiver records the RTP packets a client receives, per kind and SSRC.
type receiver struct {
	mu    sync.Mutex
	seqs  map[uint32]map[uint16]bool
	last  map[media.Kind]time.Time
	gap   map[media.Kind]time.Duration // longest gap between two packets
	count map[media.Kind]int
}

func newReceiver() *receiver {
	return &receiver{seqs: map[uint32]map[uint16]bool{}, last: map[media.Kind]time.Time{}, gap: map[media.Kind]time.Duration{}, count: map[media.Kind]int{}}
}

func (r *receiver) onMedia(k media.Kind, pkt []byte) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 || pkt[1] >= 200 && pkt[1] <= 207 {
		return
	}
	seq, ssrc := binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[8:])
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seqs[ssrc] == nil {
		r.seqs[ssrc] = map[uint16]bool{}
	}
	r.seqs[ssrc][seq] = true
	if l, ok := r.last[k]; ok && now.Sub(l) > r.gap[k] {
		r.gap[k] = now.Sub(l)
	}
	r.last[k] = now
	r.count[k]++
}

func (r *receiver) has(ssrc uint32, seq uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seqs[ssrc][seq]
}

func (r *receiver) resetGaps() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gap = map[media.Kind]time.Duration{}
	r.last = map[media.Kind]time.Time{}
}

func (r *receiver) maxGap(k media.Kind) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gap[k]
}

// rtp builds a minimal RTP packet (RFC 3550 §5.1) of size bytes.
func rtp(ssrc uint32, seq uint16, size int) []byte {
	p := make([]byte, size)
	p[0], p[1] = 0x80, 96
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*960)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	return p
}

// ssrcFor gives each client and kind its own SSRC.
func ssrcFor(client int, k media.Kind) uint32 { return uint32(0x1000*(client+1) + int(k)) }

func clientConfig(t *testing.T, e *env, client int, rx *receiver) connect.Config {
	return clientConfigTB(t, e, client, rx)
}

func clientConfigTB(t testing.TB, e *env, client int, rx *receiver) connect.Config {
	tc, err := tlsutil.PinnedClientConfig(e.web.Fingerprint)
	require.NoError(t, err)
	ssrcs := map[media.Kind][]uint32{}
	for _, k := range media.Kinds {
		ssrcs[k] = []uint32{ssrcFor(client, k)}
	}
	c := connect.Config{
		Web: e.web.URL, WebTLS: tc, MeetingID: meetingID, Passcode: "4242", Name: "client" + string(rune('A'+client)),
		SSRCs: ssrcs, NoEnvProxy: true, Logger: testLogger(t),
	}
	if rx != nil {
		c.OnMedia = rx.onMedia
	}
	return c
}

// exchange proves media flows from a to b on every kind, packet by packet:
// after a warm-up until the route exists, 50 numbered packets per kind
// must all arrive.
func exchange(t *testing.T, a *connect.Session, aIdx int, rxB *receiver) {
	t.Helper()
	ctx := context.Background()
	for _, k := range media.Kinds {
		f := a.Flow(k)
		ssrc := ssrcFor(aIdx, k)
		seq := uint16(0)
		require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool {
			seq++
			_ = f.Send(rtp(ssrc, seq, 160))
			time.Sleep(5 * time.Millisecond) // pacing of the warm-up sends, not synchronisation
			return rxB.has(ssrc, seq)
		}), "no %s media arrived", k)
		first := seq + 1
		for range 50 {
			seq++
			require.NoError(t, f.Send(rtp(ssrc, seq, 160)))
			time.Sleep(time.Millisecond) // pacing: 1 packet/ms keeps socket buffers far from full
		}
		require.NoError(t, connecttest.Wait(ctx, 10*time.Second, func() bool {
			for s := first; s != seq+1; s++ {
				if !rxB.has(ssrc, s) {
					return false
				}
			}
			return true
		}), "%s: not all 50 packets arrived", k)
	}
}

// tinyproxy is a real HTTP proxy (Debian's tinyproxy) with its own config
// and access log, listening on loopback and connecting out from the lab's
// proxy address.
type tinyproxy struct {
	addr string
	log  string
	cmd  *exec.Cmd
}

// allow lists more client addresses tinyproxy accepts (127.0.0.1 always).
func startTinyproxy(t testing.TB, bind string, allow ...string) *tinyproxy {
	t.Helper()
	if _, err := exec.LookPath("tinyproxy"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tinyproxy not installed (apt-get install tinyproxy)")
		}
		t.Skip("tinyproxy not installed (apt-get install tinyproxy)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // find a free port
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	p := &tinyproxy{addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(dir, "access.log")}
	conf := fmt.Sprintf("Port %d\nListen 127.0.0.1\nBind %s\nTimeout 60\nLogFile %q\nLogLevel Connect\nMaxClients 100\nAllow 127.0.0.1\n", port, bind, p.log)
	for _, a := range allow {
		conf += "Allow " + a + "\n"
	}
	cf := filepath.Join(dir, "tinyproxy.conf")
	require.NoError(t, os.WriteFile(cf, []byte(conf), 0o600))
	p.cmd = exec.Command("tinyproxy", "-d", "-c", cf)
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	require.NoError(t, connecttest.Wait(context.Background(), 10*time.Second, func() bool {
		c, err := net.Dial("tcp", p.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}), "tinyproxy did not start")
	return p
}

// connects counts the CONNECT requests to addr in the access log.
func (p *tinyproxy) connects(t testing.TB, addr string) int {
	b, err := os.ReadFile(p.log)
	require.NoError(t, err)
	return strings.Count(string(b), "CONNECT "+addr+" ")
}

// marker is the 16 bytes the protection tests write into every payload.
var marker = []byte("openmmr-MARKER-!")

// markerRx counts, per SSRC, the opened RTP packets whose payload holds
// the marker.
type markerRx struct {
	mu sync.Mutex
	n  map[uint32]int
}

func newMarkerRx() *markerRx { return &markerRx{n: map[uint32]int{}} }

func (r *markerRx) onMedia(_ media.Kind, pkt []byte) {
	if len(pkt) < 12+16 || wire.Classify(pkt) != wire.ClassRTP || !bytes.Contains(pkt[12:], marker) {
		return
	}
	r.mu.Lock()
	r.n[binary.BigEndian.Uint32(pkt[8:])]++
	r.mu.Unlock()
}

func (r *markerRx) count(ssrc uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[ssrc]
}

// markerRTP is an RTP packet of size bytes whose payload starts with the
// marker.
func markerRTP(ssrc uint32, seq uint16, size int) []byte {
	p := rtp(ssrc, seq, size)
	copy(p[12:], marker)
	return p
}

// markerRR is a receiver report (RFC 3550 §6.4.2) from ssrc with one
// report block about the stream about; the marker fills the block's
// statistics (the router routes by the block's SSRC only).
func markerRR(ssrc, about uint32) []byte {
	p := make([]byte, 8+24)
	p[0], p[1] = 0x81, 201
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)/4-1))
	binary.BigEndian.PutUint32(p[4:], ssrc)
	binary.BigEndian.PutUint32(p[8:], about)
	copy(p[12:], marker)
	return p
}

// markerAPP is an RTCP APP packet (RFC 3550 §6.7) carrying the marker.
func markerAPP(ssrc uint32) []byte {
	p := make([]byte, 12, 12+len(marker))
	p[0], p[1] = 0x80, 204
	binary.BigEndian.PutUint16(p[2:], uint16((12+len(marker))/4-1))
	binary.BigEndian.PutUint32(p[4:], ssrc)
	copy(p[8:], "mmrt")
	return append(p, marker...)
}
