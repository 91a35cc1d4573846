package session

// Filter selects which publishers' streams of one media kind a participant
// receives. The zero Filter receives nothing. A Filter is immutable and safe
// for concurrent use.
type Filter struct {
	all  bool
	from []uint64
}

// All receives the kind from every other participant of the meeting.
func All() Filter { return Filter{all: true} }

// None receives nothing of the kind.
func None() Filter { return Filter{} }

// From receives the kind only from the listed publisher IDs.
func From(ids ...uint64) Filter { return Filter{from: append([]uint64(nil), ids...)} }

// Includes reports whether f admits publisher id.
func (f Filter) Includes(id uint64) bool {
	if f.all {
		return true
	}
	for _, x := range f.from {
		if x == id {
			return true
		}
	}
	return false
}
