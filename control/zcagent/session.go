package zcagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/openmmr/mmr/zone/proto"
)

// session keeps the MMR registered with one ZC.
type session struct {
	a      *Agent
	addr   string
	notify chan struct{} // cap 1: a new snapshot is available

	mu     sync.Mutex
	status ZCStatus
}

// errAuth marks failures a retry will not fix without an operator (the
// secrets differ): they are logged at error level.
var errAuth = errors.New("zone secret mismatch")

// run connects, registers and reports until the agent closes, reconnecting
// with exponential backoff (jittered ±25 % so MMRs do not reconnect in
// lockstep after a ZC restart), reset after each successful registration.
func (s *session) run() {
	defer s.a.wg.Done()
	log := s.a.log.With("zc_addr", s.addr)
	backoff := s.a.cfg.BackoffMin
	for {
		registered, err := s.connectAndReport()
		if s.a.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		wasConnected := s.status.Connected
		s.status.Connected, s.status.LastError = false, err.Error()
		if wasConnected {
			s.status.Since = time.Now()
		}
		if registered {
			s.status.Failures = 0
		}
		s.status.Failures++
		failures := s.status.Failures
		s.mu.Unlock()
		if registered {
			backoff = s.a.cfg.BackoffMin
		}
		switch {
		case errors.Is(err, errAuth):
			log.Error("ZC refused the registration; check the zone secret", "err", err)
		case registered:
			log.Warn("lost the ZC; reconnecting", "err", err)
		case failures == 1:
			log.Warn("cannot reach the ZC; retrying with backoff while serving meetings", "err", err)
		default:
			log.Debug("ZC still unreachable", "err", err, "failures", failures)
		}
		wait := time.Duration(float64(backoff) * (0.75 + 0.5*rand.Float64()))
		backoff = min(2*backoff, s.a.cfg.BackoffMax)
		t := time.NewTimer(wait)
		select {
		case <-s.a.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// connectAndReport runs one connection: dial, register, report until an
// error or Close. registered tells whether the registration succeeded (the
// ZC acknowledged the first report).
func (s *session) connectAndReport() (registered bool, err error) {
	cfg := s.a.cfg
	tc, welcome, err := s.register()
	if err != nil {
		return false, err
	}
	defer tc.NetConn().Close() // not tls.Conn.Close: never wait on a dead peer
	// Close interrupts a blocked read; the loop then says Bye.
	stop := context.AfterFunc(s.a.ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if iv := time.Duration(welcome.IntervalMS) * time.Millisecond; iv < cfg.Interval {
		s.a.log.Warn("the ZC expects reports more often than this agent sends them; it will expire this MMR",
			"zc", welcome.ZC, "zc_interval", iv, "agent_interval", cfg.Interval)
	}

	fr := proto.NewFrameReader(tc)
	var (
		seq, sentVersion uint64
		frame            []byte
	)
	for {
		snap := s.a.snap.Load()
		seq++
		rep := snap.rep
		rep.Seq = seq
		if snap.hosted != nil && (seq == 1 || snap.version != sentVersion) {
			rep.Hosted = &snap.hosted
		}
		frame, err = proto.AppendMessage(frame[:0], &rep)
		if errors.Is(err, proto.ErrFrameTooLarge) && rep.Hosted != nil {
			s.a.log.Warn("meeting list too large for one report; sending counts only")
			rep.Hosted = nil
			frame, err = proto.AppendMessage(frame[:0], &rep)
		}
		if err != nil {
			return registered, fmt.Errorf("encode report: %w", err)
		}
		tc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := tc.Write(frame); err != nil {
			return registered, s.closing(tc, err)
		}
		tc.SetReadDeadline(time.Now().Add(missedAcks * cfg.Interval))
		if s.a.ctx.Err() != nil { // AfterFunc may have run before this deadline
			return registered, s.closing(tc, s.a.ctx.Err())
		}
		typ, body, err := fr.Read(proto.MaxSmallFrame)
		if err != nil {
			return registered, s.closing(tc, fmt.Errorf("waiting for report ack: %w", err))
		}
		ack, err := proto.DecodeAs[proto.ReportAck](typ, body)
		if err != nil {
			return registered, err // e.g. registry_full, rate_limited
		}
		if ack.Seq != seq {
			return registered, fmt.Errorf("ZC acked report %d, want %d", ack.Seq, seq)
		}
		if rep.Hosted != nil {
			sentVersion = snap.version
		}
		if !registered {
			registered = true
			s.mu.Lock()
			s.status.ZC, s.status.Connected, s.status.Since, s.status.LastError = welcome.ZC, true, time.Now(), ""
			s.mu.Unlock()
			s.a.log.Info("registered with ZC", "zc_addr", s.addr, "zc", welcome.ZC)
		}
		select {
		case <-s.a.ctx.Done():
			return registered, s.closing(tc, s.a.ctx.Err())
		case <-s.notify:
		}
	}
}

// closing says Bye when the agent is closing; otherwise it returns err.
func (s *session) closing(tc *tls.Conn, err error) error {
	if s.a.ctx.Err() == nil {
		return err
	}
	if frame, e := proto.AppendMessage(nil, &proto.Bye{Reason: "mmr shutting down"}); e == nil {
		tc.SetWriteDeadline(time.Now().Add(byeTimeout))
		tc.Write(frame)
	}
	return err
}

// register dials the ZC and runs Hello → Welcome → Register.
func (s *session) register() (*tls.Conn, *proto.Welcome, error) {
	cfg := s.a.cfg
	ctx, cancel := context.WithTimeout(s.a.ctx, cfg.HandshakeTimeout)
	defer cancel()
	var tlsConf *tls.Config
	if cfg.TLS != nil {
		tlsConf = cfg.TLS.Clone()
	} else {
		// Authentication is the zone-secret exchange below, bound to this
		// TLS session: see Config.TLS.
		tlsConf = &tls.Config{InsecureSkipVerify: true}
	}
	tlsConf.MinVersion = tls.VersionTLS13
	tlsConf.NextProtos = []string{proto.ALPN}
	nd := &net.Dialer{}
	if cfg.LocalAddr.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: cfg.LocalAddr.AsSlice()}
	}
	conn, err := (&tls.Dialer{NetDialer: nd, Config: tlsConf}).DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, nil, err
	}
	tc := conn.(*tls.Conn)
	ok := false
	defer func() {
		if !ok {
			tc.NetConn().Close()
		}
	}()
	dl, _ := ctx.Deadline()
	tc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	exporter, err := proto.Exporter(tc.ConnectionState())
	if err != nil {
		return nil, nil, err
	}
	hello, err := proto.AppendMessage(nil, &proto.Hello{Version: proto.Version, MMR: cfg.ID, Proof: proto.MMRProof(cfg.Secret, exporter, cfg.ID)})
	if err != nil {
		return nil, nil, err
	}
	if _, err := tc.Write(hello); err != nil {
		return nil, nil, err
	}
	typ, body, err := proto.NewFrameReader(tc).Read(proto.MaxSmallFrame)
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for welcome: %w", err)
	}
	welcome, err := proto.DecodeAs[proto.Welcome](typ, body)
	if errors.Is(err, &proto.Error{Code: proto.ErrCodeAuth}) {
		return nil, nil, fmt.Errorf("%w: %v", errAuth, err)
	}
	if err != nil {
		return nil, nil, err
	}
	if !proto.VerifyProof(proto.ZCProof(cfg.Secret, exporter, cfg.ID), welcome.Proof) {
		return nil, nil, fmt.Errorf("%w: the ZC did not prove the zone secret", errAuth)
	}
	reg, err := proto.AppendMessage(nil, &proto.Register{Endpoints: cfg.Endpoints, Capacity: cfg.Capacity, Fingerprint: cfg.Fingerprint, Software: cfg.Software})
	if err != nil {
		return nil, nil, err
	}
	if _, err := tc.Write(reg); err != nil {
		return nil, nil, err
	}
	tc.SetDeadline(time.Time{})
	ok = true
	return tc, welcome, nil
}
