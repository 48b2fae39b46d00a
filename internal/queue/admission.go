package queue

// Room is the shared capacity behind durable queues (session/store.Store):
// Reserve admits new entries whose Size adds up to size, all of them or none,
// and Unreserve ends the reservation once they are appended (they are then
// counted as appended). A durable Queue's Append never refuses for room.
type Room interface {
	Reserve(entries int, size int64) error
	Unreserve(entries int, size int64)
}

// Fanout is the admission of one message to every lane it goes to (a PUBLISH
// routed to sessions, shared groups and consumers): the room for all its
// durable copies is reserved at once, before the first Admit, so the message
// is in every durable lane it matched or in none, however a commit in between
// finds the store. When the room refused, the durable lanes refuse it
// (counted) and the lanes in RAM still take it, unless the caller gives up the
// whole message (Reserve's error).
type Fanout struct {
	room    Room
	entries int
	size    int64
	noRoom  bool
}

// Reserve reserves room for entries durable entries whose Sizes add up to size
// (room nil or entries 0: nothing to reserve). On error the Fanout
// refuses every durable lane; the caller may refuse the whole message instead.
// Call Done once the copies are appended.
//
// Cost: one Room.Reserve, when there is a durable copy.
func Reserve(room Room, entries int, size int64) (Fanout, error) {
	if room == nil || entries <= 0 {
		return Fanout{}, nil
	}
	if err := room.Reserve(entries, size); err != nil {
		return Fanout{noRoom: true}, err
	}
	return Fanout{room: room, entries: entries, size: size}, nil
}

// NoRoom reports whether the room refused: durable lanes do not take the
// message.
func (f *Fanout) NoRoom() bool { return f.noRoom }

// Done ends the reservation (the copies are appended).
func (f *Fanout) Done() {
	if f.room != nil {
		f.room.Unreserve(f.entries, f.size)
		f.room = nil
	}
}
