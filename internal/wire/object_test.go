package wire

import "testing"

func TestObjectID(t *testing.T) {
	r := NewReplicaID()
	if !ValidReplicaID(r) {
		t.Fatalf("NewReplicaID() = %q, not a replica id", r)
	}
	id := NewObjectID(r)
	got, ok := ObjectReplica(id)
	if !ok || got != r {
		t.Fatalf("ObjectReplica(%q) = %q, %v; want %q", id, got, ok, r)
	}
	if NewObjectID(r) == id {
		t.Error("two instance ids are equal")
	}
	for _, bad := range []string{"", r, r + ".", r + "." + r + "0", r + "-" + r, "0123456789ABCDEF.0123456789abcdef", "../../flash/replica"} {
		if _, ok := ObjectReplica(bad); ok {
			t.Errorf("ObjectReplica(%q) accepted", bad)
		}
	}
	if p := ObjectPath("Counter", id, "inc"); p != "/flash/objects/Counter/"+id+"/inc" {
		t.Errorf("ObjectPath = %q", p)
	}
	if p := ObjectPath("Counter", "", ""); p != "/flash/objects/Counter" {
		t.Errorf("ObjectPath = %q", p)
	}
}

func FuzzObjectReplica(f *testing.F) {
	f.Add("0123456789abcdef.0123456789abcdef")
	f.Add("0123456789abcdef")
	f.Fuzz(func(t *testing.T, id string) {
		r, ok := ObjectReplica(id)
		if !ok {
			return
		}
		if !ValidReplicaID(r) || len(id) != objectIDLen || id[:ReplicaIDLen] != r {
			t.Fatalf("ObjectReplica(%q) = %q: not the id's prefix or not a replica id", id, r)
		}
		for i := 0; i < len(id); i++ {
			if c := id[i]; c == '/' || c == '%' || c == '?' {
				t.Fatalf("accepted id %q holds a path character", id)
			}
		}
	})
}
