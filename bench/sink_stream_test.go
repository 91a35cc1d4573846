package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
)

// dialTimeout bounds connecting and binding all the stream subscribers of
// one rig (TLS handshakes included; about a millisecond each, far more
// under the race detector).
const dialTimeout = 30 * time.Second

// newStreamSinkSet connects one stream subscriber per token of si (TCP, or
// TLS pinned to si.Fingerprint when set), binds each as a video flow, and
// drains each with its own goroutine. Counting and verification are those
// of the UDP sinks (see sinkSet).
func newStreamSinkSet(si streamInfo, ssrc uint32, size int, verify bool) (*sinkSet, error) {
	var conf *tls.Config
	if si.Fingerprint != "" {
		var err error
		if conf, err = tlsutil.PinnedClientConfig(si.Fingerprint); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	s := &sinkSet{ssrc: ssrc, size: size, verify: verify, progress: make(chan struct{}, 1)}
	for i, tok := range si.Tokens {
		f, err := streammedia.Dial(ctx, si.Addr, media.Video, tok, conf)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("bench: stream subscriber %d: %w", i, err), s.close())
		}
		k := &sink{flow: f, addr: f.Mapped()}
		if verify {
			k.seen = make([]uint64, 65536/64)
		}
		s.sinks = append(s.sinks, k)
	}
	for _, k := range s.sinks {
		s.wg.Add(1)
		go s.drainStream(k)
	}
	return s, nil
}

// drainStream reads k's flow one RFC 4571 frame at a time (the flow's
// deframer reads up to 64 KiB per system call) until the flow is closed or
// fails. A flow the router closed (for example as a slow subscriber) stops
// counting, which shows as loss.
func (s *sinkSet) drainStream(k *sink) {
	defer s.wg.Done()
	buf := make([]byte, 2048) // more than the router's largest packet (1500)
	for {
		n, err := k.flow.Recv(buf, time.Time{})
		if err != nil {
			return
		}
		s.handle(k, buf[:n])
		s.notify()
	}
}
