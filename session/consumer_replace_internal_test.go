package session

import (
	"testing"

	"edgegw/internal/queue"
)

// ReplaceConsumer swaps a consumer of the same name in one step (a reloaded
// bridge or meter): the new filters select, the old ones no longer do, the
// dropped count carries over; RemoveConsumer leaves alone a consumer that
// replaced the one it is given.
func TestReplaceAndRemoveConsumer(t *testing.T) {
	e, err := New(DefaultOptions(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	names := func(topic string) []string {
		var out []string
		for _, c := range e.matchConsumers(topic) {
			out = append(out, c.Name)
		}
		return out
	}
	q := queue.NewMem(nil)
	lane := func(q queue.Queue) *queue.Lane { return queue.New("bridge/up", q, e.LaneConfig(queue.Limits{})) }
	old := &Consumer{Name: "bridge/up", Filters: []string{"a/#"}, Lane: lane(q)}
	if err := e.AddConsumer(old); err != nil {
		t.Fatal(err)
	}
	old.carried.Store(3) // as if its lane had lost 3
	if err := e.AddConsumer(&Consumer{Name: "bridge/up", Filters: []string{"b/#"}, Lane: lane(q)}); err == nil {
		t.Fatal("AddConsumer accepted a second consumer of the same name")
	}
	repl := &Consumer{Name: "bridge/up", Filters: []string{"b/#"}, Lane: lane(q)}
	if err := e.ReplaceConsumer(repl); err != nil {
		t.Fatal(err)
	}
	if got := names("a/1"); len(got) != 0 {
		t.Errorf("a/1 still routed to %v after the replace", got)
	}
	if got := e.matchConsumers("b/1"); len(got) != 1 || got[0] != repl {
		t.Errorf("b/1 routed to %v, want the new consumer", got)
	}
	if d := repl.Dropped(); d != 3 {
		t.Errorf("dropped count %d after the replace, want the old one's 3", d)
	}
	if err := e.ReplaceConsumer(&Consumer{Name: "bridge/up", Filters: []string{"$share/g/x"}, Lane: lane(q)}); err == nil {
		t.Error("ReplaceConsumer accepted a shared filter")
	}
	if got := e.matchConsumers("b/1"); len(got) != 1 || got[0] != repl {
		t.Errorf("a refused replace changed the routing: %v", got)
	}
	e.RemoveConsumer(old) // replaced already: nothing to do
	if got := names("b/1"); len(got) != 1 {
		t.Errorf("RemoveConsumer of the replaced consumer removed its successor: %v", got)
	}
	e.RemoveConsumer(repl)
	if got := names("b/1"); len(got) != 0 {
		t.Errorf("b/1 still routed to %v after RemoveConsumer", got)
	}
}
