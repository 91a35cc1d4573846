package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/webclient"
	"github.com/openmmr/mmr/wire"
)

// wtWindow bounds the packets in flight to each WebTransport subscriber:
// quic-go's HTTP/3 layer holds at most 32 received datagrams per session
// and drops (uncounted) what comes beyond while the reader is behind, so a
// closed loop of more could lose copies that the router did send.
const wtWindow = 24

// newWTSinkSet opens one WebTransport session per token of si (quic-go's
// client, pinned to si.Fingerprint, as a browser's web client), binds each
// as a video flow with a Bind datagram and drains each with its own
// goroutine.
func newWTSinkSet(si streamInfo, ssrc uint32, size int, verify bool) (*sinkSet, error) {
	conf, err := tlsutil.PinnedClientConfig(si.Fingerprint)
	if err != nil {
		return nil, err
	}
	conf.NextProtos = []string{http3.NextProtoH3}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	s := &sinkSet{ssrc: ssrc, size: size, verify: verify, progress: make(chan struct{}, 1)}
	bind := make([]byte, wire.BindSize)
	for i, tok := range si.Tokens {
		d := &webtransport.Transport{TLSClientConfig: conf, QUICConfig: &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true}}
		_, sess, err := d.Dial(ctx, "https://"+si.Addr.String()+webclient.WebTransportPath, nil)
		if err == nil {
			b := wire.Bind{Kind: media.Video, TxID: uint32(i + 1)}
			now := time.Now()
			b.Sign(tok, uint64(now.UnixMicro()), now)
			if _, err = b.MarshalTo(bind); err == nil {
				err = sess.SendDatagram(bind)
			}
			var ack []byte
			if err == nil {
				ack, err = sess.ReceiveDatagram(ctx)
			}
			if err == nil && wire.Classify(ack) != wire.ClassBindAck {
				err = errors.New("no BindAck")
			}
			if err != nil {
				_ = sess.CloseWithError(0, "")
			}
		}
		d.Close()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("bench: WebTransport subscriber %d: %w", i, err), s.close())
		}
		k := &sink{wt: sess}
		if verify {
			k.seen = make([]uint64, 65536/64)
		}
		s.sinks = append(s.sinks, k)
	}
	for _, k := range s.sinks {
		s.wg.Add(1)
		go s.drainWT(k)
	}
	return s, nil
}

// drainWT reads k's datagrams (one packet each) until its session ends.
func (s *sinkSet) drainWT(k *sink) {
	defer s.wg.Done()
	for {
		b, err := k.wt.ReceiveDatagram(context.Background())
		if err != nil {
			return
		}
		s.handle(k, b)
		s.notify()
	}
}
