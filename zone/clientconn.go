package zone

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/openmmr/mmr/zone/proto"
)

// serveClient answers a client's Lookups and Probes, in any order, until
// the client closes, idles out, exceeds a rate or sends something else.
func (s *Server) serveClient(tc *tls.Conn, fr *proto.FrameReader, typ proto.Type, body []byte) {
	lookups, probes := newBucket(s.cfg.LookupRate), newBucket(s.cfg.ProbeRate)
	var out []byte
	for {
		now := time.Now()
		switch typ {
		case proto.TypeLookup:
			if !lookups.allow(now) {
				s.st.rateLimited.Add(1)
				s.refuse(tc, proto.ErrCodeRateLimited, "lookups too frequent")
				return
			}
			req, err := proto.DecodeAs[proto.Lookup](typ, body)
			if err != nil {
				s.st.badRequests.Add(1)
				s.refuse(tc, proto.ErrCodeBadRequest, err.Error())
				return
			}
			s.st.lookups.Add(1)
			pl, err := s.reg.lookup(req.Meeting, now)
			switch {
			case errors.Is(err, ErrNoCapacity):
				out, err = proto.AppendMessage(out[:0], &proto.Error{Code: proto.ErrCodeNoCapacity, Message: err.Error()})
			case err == nil:
				out, err = proto.AppendMessage(out[:0], &pl)
			}
			if err != nil {
				s.log.Error("lookup answer not encodable", "meeting", req.Meeting, "err", err)
				return
			}
		case proto.TypeProbe:
			if !probes.allow(now) {
				s.st.rateLimited.Add(1)
				s.refuse(tc, proto.ErrCodeRateLimited, "probes too frequent")
				return
			}
			if _, err := proto.DecodeProbe(body); err != nil {
				s.st.badRequests.Add(1)
				s.refuse(tc, proto.ErrCodeBadRequest, err.Error())
				return
			}
			s.st.probes.Add(1)
			out = proto.AppendFrame(out[:0], proto.TypeProbeEcho, body)
		default:
			s.st.badRequests.Add(1)
			s.refuse(tc, proto.ErrCodeBadRequest, "unexpected "+typ.String()+" from a client")
			return
		}
		if s.send(tc, out) != nil {
			return
		}
		var err error
		tc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		typ, body, err = fr.Read(proto.MaxSmallFrame)
		if err != nil {
			s.badFrame(tc, err)
			return
		}
	}
}
