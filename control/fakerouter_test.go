package control

import (
	"slices"
	"sync"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/wire"
)

// fakeRouter is an in-memory Router for the unit tests: it enforces the
// router's documented errors and records what the server asked for. The
// end-to-end tests (e2e_test.go) use the real router.
type fakeRouter struct {
	mu       sync.Mutex
	next     router.ParticipantID
	meetings map[string]map[router.ParticipantID]bool
	parts    map[router.ParticipantID]*fakePart
}

type fakePart struct {
	meeting string
	rtcp    *[32]byte // RTCP secret given by AddParticipant or SetRTCPSecret
	pub     [media.NumKinds][]uint32
	sub     [media.NumKinds]router.Filter
}

func newFakeRouter() *fakeRouter {
	return &fakeRouter{meetings: map[string]map[router.ParticipantID]bool{}, parts: map[router.ParticipantID]*fakePart{}}
}

func (f *fakeRouter) CreateMeeting(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" {
		return router.ErrMeetingIDEmpty
	}
	if f.meetings[id] != nil {
		return router.ErrMeetingExists
	}
	f.meetings[id] = map[router.ParticipantID]bool{}
	return nil
}

func (f *fakeRouter) EndMeeting(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.meetings[id]
	if m == nil {
		return router.ErrNoMeeting
	}
	for p := range m {
		delete(f.parts, p)
	}
	delete(f.meetings, id)
	return nil
}

func (f *fakeRouter) AddParticipant(meeting string, o router.ParticipantOptions) (router.ParticipantInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.meetings[meeting]
	if m == nil {
		return router.ParticipantInfo{}, router.ErrNoMeeting
	}
	f.next++
	tok, err := wire.NewToken()
	if err != nil {
		return router.ParticipantInfo{}, err
	}
	m[f.next] = true
	p := &fakePart{meeting: meeting, rtcp: o.RTCPSecret}
	for i := range p.sub {
		p.sub[i] = router.All()
	}
	f.parts[f.next] = p
	return router.ParticipantInfo{ID: f.next, Token: tok}, nil
}

func (f *fakeRouter) RemoveParticipant(id router.ParticipantID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[id]
	if p == nil {
		return router.ErrNoParticipant
	}
	delete(f.meetings[p.meeting], id)
	delete(f.parts, id)
	return nil
}

func (f *fakeRouter) SetRTCPSecret(id router.ParticipantID, secret *[32]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[id]
	if p == nil {
		return router.ErrNoParticipant
	}
	p.rtcp = secret
	return nil
}

func (f *fakeRouter) Publish(id router.ParticipantID, k media.Kind, ssrcs ...uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[id]
	if p == nil {
		return router.ErrNoParticipant
	}
	if !k.Valid() {
		return router.ErrKind
	}
	for _, s := range ssrcs {
		if s == 0 {
			return router.ErrSSRCZero
		}
		for other := range f.meetings[p.meeting] {
			for _, pub := range f.parts[other].pub {
				if slices.Contains(pub, s) {
					return router.ErrSSRCInUse
				}
			}
		}
	}
	p.pub[k.Index()] = append(p.pub[k.Index()], ssrcs...)
	return nil
}

func (f *fakeRouter) Unpublish(id router.ParticipantID, k media.Kind, ssrcs ...uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[id]
	if p == nil {
		return router.ErrNoParticipant
	}
	p.pub[k.Index()] = slices.DeleteFunc(p.pub[k.Index()], func(s uint32) bool { return slices.Contains(ssrcs, s) })
	return nil
}

func (f *fakeRouter) Subscribe(id router.ParticipantID, k media.Kind, fl router.Filter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[id]
	if p == nil {
		return router.ErrNoParticipant
	}
	p.sub[k.Index()] = fl
	return nil
}

// counts returns the number of meetings and participants.
func (f *fakeRouter) counts() (meetings, participants int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.meetings), len(f.parts)
}

// published returns what id publishes for k.
func (f *fakeRouter) published(id uint64, k media.Kind) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.parts[router.ParticipantID(id)]; p != nil {
		return slices.Clone(p.pub[k.Index()])
	}
	return nil
}

// filter returns id's subscription filter for k.
func (f *fakeRouter) filter(id uint64, k media.Kind) (router.Filter, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.parts[router.ParticipantID(id)]; p != nil {
		return p.sub[k.Index()], true
	}
	return router.Filter{}, false
}
