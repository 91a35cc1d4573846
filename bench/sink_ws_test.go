package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/webclient"
	"github.com/openmmr/mmr/wire"
)

// newWSSinkSet connects one media WebSocket subscriber per token of si
// (wss:// pinned to si.Fingerprint, as a browser's web client), binds each
// as a video flow and drains each with its own goroutine.
func newWSSinkSet(si streamInfo, ssrc uint32, size int, verify bool) (*sinkSet, error) {
	conf, err := tlsutil.PinnedClientConfig(si.Fingerprint)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	s := &sinkSet{ssrc: ssrc, size: size, verify: verify, progress: make(chan struct{}, 1)}
	bind := make([]byte, wire.BindSize)
	for i, tok := range si.Tokens {
		c, _, err := websocket.Dial(ctx, "wss://"+si.Addr.String()+"/v1/ws/media", &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{webclient.MediaProtocol}})
		if err == nil {
			c.SetReadLimit(webclient.MaxMediaMessage)
			b := wire.Bind{Kind: media.Video, TxID: uint32(i + 1)}
			now := time.Now()
			b.Sign(tok, uint64(now.UnixMicro()), now)
			if _, err = b.MarshalTo(bind); err == nil {
				err = c.Write(ctx, websocket.MessageBinary, bind)
			}
			var ack []byte
			if err == nil {
				_, ack, err = c.Read(ctx)
			}
			if err == nil && wire.Classify(ack) != wire.ClassBindAck {
				err = errors.New("no BindAck")
			}
			if err != nil {
				c.CloseNow()
			}
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("bench: WebSocket subscriber %d: %w", i, err), s.close())
		}
		k := &sink{ws: c}
		if verify {
			k.seen = make([]uint64, 65536/64)
		}
		s.sinks = append(s.sinks, k)
	}
	for _, k := range s.sinks {
		s.wg.Add(1)
		go s.drainWS(k)
	}
	return s, nil
}

// drainWS reads k's WebSocket one message (one packet) at a time until it
// is closed or fails.
func (s *sinkSet) drainWS(k *sink) {
	defer s.wg.Done()
	for {
		_, b, err := k.ws.Read(context.Background())
		if err != nil {
			return
		}
		s.handle(k, b)
		s.notify()
	}
}
