package zone

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/openmmr/mmr/zone/proto"
)

// serveMMR runs an MMR registration: Hello (already read) → Welcome →
// Register, then Reports (each acked) until Bye, an error, or expiry.
func (s *Server) serveMMR(tc *tls.Conn, fr *proto.FrameReader, helloBody []byte) {
	now := time.Now()
	if !s.register.allow(now) {
		s.st.rateLimited.Add(1)
		s.refuse(tc, proto.ErrCodeRateLimited, "too many registrations; retry later")
		return
	}
	hello, err := proto.DecodeAs[proto.Hello](proto.TypeHello, helloBody)
	if err != nil {
		s.st.badRequests.Add(1)
		code := proto.ErrCodeBadRequest
		var pe *proto.Error
		if errors.As(err, &pe) {
			code = pe.Code
		}
		s.refuse(tc, code, err.Error())
		return
	}
	exporter, err := proto.Exporter(tc.ConnectionState())
	if err != nil {
		s.st.badRequests.Add(1)
		s.refuse(tc, proto.ErrCodeBadRequest, err.Error())
		return
	}
	var secret []byte
	for _, sec := range s.cfg.Secrets {
		if proto.VerifyProof(proto.MMRProof(sec, exporter, hello.MMR), hello.Proof) {
			secret = sec
			break
		}
	}
	if secret == nil {
		s.st.authFailures.Add(1)
		// Debug, not Warn: a flood must not flood the log (it is counted;
		// the misconfigured MMR logs the refusal as an error).
		s.log.Debug("MMR registration refused: bad zone-secret proof", "mmr", hello.MMR, "remote", tc.RemoteAddr())
		s.refuse(tc, proto.ErrCodeAuth, "zone secret proof did not verify")
		return
	}
	welcome, err := proto.AppendMessage(nil, &proto.Welcome{
		Version: proto.Version, ZC: s.cfg.ID, Proof: proto.ZCProof(secret, exporter, hello.MMR),
		IntervalMS: int(s.cfg.ReportInterval / time.Millisecond),
	})
	if err != nil || s.send(tc, welcome) != nil {
		return
	}
	typ, body, err := fr.Read(proto.MaxSmallFrame)
	if err != nil {
		s.badFrame(tc, err)
		return
	}
	reg, err := proto.DecodeAs[proto.Register](typ, body)
	if err != nil {
		s.st.badRequests.Add(1)
		s.refuse(tc, proto.ErrCodeBadRequest, err.Error())
		return
	}
	session, old, err := s.reg.register(hello.MMR, *reg, time.Now())
	if err != nil {
		s.refuse(tc, proto.ErrCodeRegistryFull, err.Error())
		return
	}
	s.st.registrations.Add(1)
	s.mu.Lock()
	s.sessions[session] = tc.NetConn()
	oldConn := s.sessions[old]
	s.mu.Unlock()
	if oldConn != nil {
		oldConn.Close() // the same MMR registered again (restarted or reconnected)
	}
	log := s.log.With("mmr", hello.MMR, "remote", tc.RemoteAddr())
	log.Info("MMR registered", "endpoints", reg.Endpoints, "capacity", reg.Capacity, "replaced", old != 0)
	tc.SetDeadline(time.Time{})

	bye := s.mmrLoop(tc, fr, hello.MMR, session, log)

	s.mu.Lock()
	delete(s.sessions, session)
	s.mu.Unlock()
	if bye {
		if s.reg.remove(hello.MMR, session) {
			log.Info("MMR left the zone (bye)")
		}
		return
	}
	s.reg.lost(hello.MMR, session, time.Now())
	log.Info("MMR connection lost; out of selection unless it reconnects", "within", s.cfg.ReportInterval)
}

// mmrLoop applies reports until the connection ends; it reports whether
// the MMR said Bye.
func (s *Server) mmrLoop(tc *tls.Conn, fr *proto.FrameReader, id string, session uint64, log *slog.Logger) bool {
	reports := newBucket(s.cfg.ReportRate)
	// Backstop for a peer that stops sending: the sweeper closes the
	// connection at expiry already; this bounds a read if it did not.
	idle := time.Duration(s.cfg.MissedReports+1) * s.cfg.ReportInterval
	var ack []byte
	for {
		tc.SetReadDeadline(time.Now().Add(idle))
		typ, body, err := fr.Read(proto.MaxFrame)
		if err != nil {
			s.badFrame(tc, err)
			return false
		}
		now := time.Now()
		switch typ {
		case proto.TypeReport:
			if !reports.allow(now) {
				s.st.rateLimited.Add(1)
				s.refuse(tc, proto.ErrCodeRateLimited, "reports too frequent")
				return false
			}
			rep, err := proto.DecodeAs[proto.Report](typ, body)
			if err != nil {
				s.st.badRequests.Add(1)
				s.refuse(tc, proto.ErrCodeBadRequest, err.Error())
				return false
			}
			if err := s.reg.report(id, session, *rep, now); err != nil {
				s.refuse(tc, proto.ErrCodeSessionClosed, err.Error())
				return false
			}
			s.st.reports.Add(1)
			ack, _ = proto.AppendMessage(ack[:0], &proto.ReportAck{Seq: rep.Seq})
			if s.send(tc, ack) != nil {
				return false
			}
		case proto.TypeBye:
			if _, err := proto.DecodeAs[proto.Bye](typ, body); err != nil {
				log.Debug("malformed bye; leaving anyway", "err", err)
			}
			return true
		default:
			s.st.badRequests.Add(1)
			s.refuse(tc, proto.ErrCodeBadRequest, "unexpected "+typ.String()+" from an MMR")
			return false
		}
	}
}
