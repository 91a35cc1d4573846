package control

import (
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/router"
	"time"
)

// Active-speaker detection. The router's packet path only adds each audio
// packet's RFC 6464 level to a per-participant counter (router.TakeVoice);
// the server samples those counters every SpeakerInterval and tells each
// meeting who its active speaker is with an active-speaker event when it
// changes. The choice is the loudest participant that is speaking, with
// hysteresis so that a cough or a short overlap does not move the
// highlight (docs/control-protocol.md, "active-speaker").
const (
	// speakingLoudness is the mean loudness (127 - level in -dBov) from
	// which a participant counts as speaking in an interval: louder than
	// -50 dBov. Speech into a microphone measures about -20 to -40 dBov;
	// room noise and comfort noise stay below -60.
	speakingLoudness = 127 - 50
	// speakerMargin is how much louder (dB) a challenger must be than a
	// current speaker who still speaks to take over.
	speakerMargin = 6
	// speakerHold is the number of consecutive intervals a challenger must
	// win before the event is sent: with the default 300 ms interval, 0.6 s.
	speakerHold = 2
)

// VoiceTaker is what the detector needs of the router (*router.Router has
// it). A Router that lacks it gets no active-speaker events.
type VoiceTaker interface {
	TakeVoice(meeting string, dst []router.Voice) ([]router.Voice, error)
}

// speakerState is the detector of one meeting. Owned by the speaker
// goroutine.
type speakerState struct {
	current    uint64 // participant announced last, 0 for none yet
	challenger uint64 // who would replace current
	wins       int    // consecutive intervals challenger won
}

// next feeds one interval's activity and returns the participant to
// announce, or 0 when the announced speaker stays.
func (st *speakerState) next(vs []router.Voice) uint64 {
	var best router.Voice
	var cur *router.Voice
	for i := range vs {
		v := &vs[i]
		if v.Participant == st.current {
			cur = v
		}
		if v.Loudness >= speakingLoudness && v.Loudness > best.Loudness {
			best = *v
		}
	}
	switch {
	case best.Participant == 0 || best.Participant == st.current:
		st.challenger, st.wins = 0, 0
		return 0
	case cur != nil && cur.Loudness >= speakingLoudness && best.Loudness < cur.Loudness+speakerMargin:
		st.challenger, st.wins = 0, 0
		return 0
	}
	if best.Participant != st.challenger {
		st.challenger, st.wins = best.Participant, 0
	}
	st.wins++
	if st.wins < speakerHold && st.current != 0 {
		return 0
	}
	st.current, st.challenger, st.wins = best.Participant, 0, 0
	return st.current
}

// speakers samples every meeting's voice activity each SpeakerInterval and
// sends active-speaker events.
func (s *Server) speakers(vt VoiceTaker) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SpeakerInterval)
	defer t.Stop()
	states := map[string]*speakerState{}
	var ids []string
	var vs []router.Voice
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ids = ids[:0]
		s.mu.Lock()
		for id := range s.meetings {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			seen[id] = true
			var err error
			if vs, err = vt.TakeVoice(id, vs[:0]); err != nil {
				continue
			}
			st := states[id]
			if st == nil {
				st = &speakerState{}
				states[id] = st
			}
			if p := st.next(vs); p != 0 {
				s.announceSpeaker(id, p)
			}
		}
		for id := range states {
			if !seen[id] {
				delete(states, id)
			}
		}
	}
}

// announceSpeaker sends active-speaker to every connected participant of
// the meeting, viewers included, if the speaker is still in it.
func (s *Server) announceSpeaker(meetingID string, pid uint64) {
	s.mu.Lock()
	m := s.meetings[meetingID]
	s.mu.Unlock()
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.parts[router.ParticipantID(pid)]; !ok {
		return
	}
	m.broadcastLocked(s, &proto.ActiveSpeaker{Participant: pid}, nil)
}
