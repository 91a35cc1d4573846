package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"github.com/openmmr/mmr/internal/onebox"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/tlsutil"
)

// TestOneBoxWebTier: the one-box node serves the web tier on its TLS port
// (ALPN h2, http/1.1, and HTTP without ALPN, told apart from control
// clients without ALPN), creates a meeting with a passcode on first start
// and logs how to join it; the lookup's token joins the node's control
// channel, whose zone list names the in-process ZC. A restart keeps the
// meeting.
func TestOneBoxWebTier(t *testing.T) {
	leaktest.Check(t)
	n, state, logs := startNode(t)
	addr := addrPort(n.edge.Addr()).String()
	var fm firstMeeting
	b, err := os.ReadFile(filepath.Join(state, firstMeetingFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &fm))
	require.Regexp(t, `^[0-9]{10}$`, fm.ID)
	require.Regexp(t, `^[0-9]{6}$`, fm.Passcode)
	cmd := "go run ./cmd/openmmr join -web https://" + addr + " -pin " + n.fp + " -passcode " + fm.Passcode + " " + fm.ID
	require.Contains(t, logs.String(), cmd, "the join command is logged")
	require.Contains(t, logs.String(), "level=INFO msg=\"mmr: join the meeting\"")
	lj, err := onebox.Read(state) // what `openmmr join -local` reads
	require.NoError(t, err)
	require.Equal(t, onebox.Join{Web: "https://" + addr, Pin: n.fp, Meeting: fm.ID, Passcode: fm.Passcode}, lj)
	key, err := os.ReadFile(filepath.Join(state, adminKeyFile))
	require.NoError(t, err)
	st, err := os.Stat(filepath.Join(state, adminKeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	pin, err := tlsutil.PinnedClientConfig(n.fp)
	require.NoError(t, err)
	client := func(h1, h2 bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: pin.Clone(), Protocols: new(http.Protocols)}
		tr.Protocols.SetHTTP1(h1)
		tr.Protocols.SetHTTP2(h2)
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 20 * time.Second}
	}
	body := `{"meeting_id":"` + fm.ID + `","passcode":"` + fm.Passcode + `","name":"Ann","capabilities":["udp","tcp","tls"]}`
	type lookup struct {
		JoinToken string `json:"join_token"`
		Role      string
		Zones     []struct {
			Name string
			ZCs  []struct{ Addr, Fingerprint string } `json:"zcs"`
		}
	}
	var l lookup
	for _, c := range []struct {
		name   string
		h1, h2 bool
		proto  string
	}{{"h2", false, true, "HTTP/2.0"}, {"http/1.1", true, false, "HTTP/1.1"}} {
		resp, err := client(c.h1, c.h2).Post("https://"+addr+"/v1/lookup", "application/json", strings.NewReader(body))
		require.NoError(t, err, c.name)
		require.Equal(t, c.proto, resp.Proto)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
		resp.Body.Close()
	}
	require.Equal(t, "participant", l.Role)
	require.Len(t, l.Zones, 1)
	require.Equal(t, "local", l.Zones[0].Name)
	require.Equal(t, addr, l.Zones[0].ZCs[0].Addr, "the zone names the in-process ZC")
	require.Equal(t, n.fp, l.Zones[0].ZCs[0].Fingerprint)

	// The admin key from the first start works.
	req, _ := http.NewRequest("GET", "https://"+addr+"/v1/meetings/"+fm.ID, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	resp, err := client(true, true).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// No ALPN, HTTP: a browser-like request to https://HOST/.
	raw, err := tls.Dial("tcp", addr, pin)
	require.NoError(t, err)
	require.Equal(t, "", raw.ConnectionState().NegotiatedProtocol)
	_, err = io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	hr, err := http.ReadResponse(bufio.NewReader(raw), nil)
	require.NoError(t, err)
	page, _ := io.ReadAll(hr.Body)
	raw.Close()
	require.Equal(t, http.StatusOK, hr.StatusCode)
	require.Contains(t, string(page), "openmmr")

	// No ALPN, control protocol: hello, then join with the lookup's token.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err = tls.Dial("tcp", addr, pin)
	require.NoError(t, err)
	defer raw.Close()
	fr := proto.NewFrameReader(raw, proto.ClientMaxFrame)
	call := func(id uint32, m proto.Message) proto.Message {
		f, err := proto.Encode(id, m) // a whole frame: 4-byte length, JSON
		require.NoError(t, err)
		_, err = raw.Write(f)
		require.NoError(t, err)
		require.NoError(t, raw.SetReadDeadline(time.Now().Add(20*time.Second)))
		payload, err := fr.Next()
		require.NoError(t, err)
		_, msg, err := proto.Decode(payload)
		require.NoError(t, err)
		return msg
	}
	w := call(1, &proto.Hello{Versions: []int{proto.Version}})
	_, ok := w.(*proto.Welcome)
	require.True(t, ok, "welcome over the no-ALPN route: %#v", w)
	j, ok := call(2, &proto.Join{Meeting: fm.ID, Token: l.JoinToken}).(*proto.Joined)
	require.True(t, ok, "the lookup's token joins")
	require.Equal(t, fm.ID, j.Meeting)

	// And with ALPN, through the Go client.
	cc, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: pin})
	require.NoError(t, err)
	defer cc.Close()
	resp, err = client(true, true).Post("https://"+addr+"/v1/lookup", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
	resp.Body.Close()
	_, err = cc.Join(ctx, fm.ID, l.JoinToken, "")
	require.NoError(t, err)
	require.Positive(t, n.web.sniff.Stats().HTTP)
	require.Positive(t, n.web.sniff.Stats().Other)
}

// TestOneBoxRestartKeepsMeeting: the second start finds the meeting.
func TestOneBoxRestartKeepsMeeting(t *testing.T) {
	leaktest.Check(t)
	state := t.TempDir()
	args := []string{"-udp", "127.0.0.1:0", "-shards", "1", "-control", "127.0.0.1:0", "-state", state, "-id", "mmr-test"}
	var ids []string
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan *node, 1)
		done := make(chan int, 1)
		logs := &lockedBuffer{}
		go func() { done <- run(ctx, args, logs, nil, started) }()
		select {
		case <-started:
		case code := <-done:
			cancel()
			t.Fatalf("run exited %d:\n%s", code, logs.String())
		}
		var fm firstMeeting
		b, err := os.ReadFile(filepath.Join(state, firstMeetingFile))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &fm))
		require.Contains(t, logs.String(), "-passcode "+fm.Passcode+" "+fm.ID)
		ids = append(ids, fm.ID)
		cancel()
		require.Equal(t, 0, <-done)
	}
	require.Equal(t, ids[0], ids[1])
	_, err := os.Stat(filepath.Join(state, "web.db"))
	require.NoError(t, err, "SQLite in the state directory")
}
