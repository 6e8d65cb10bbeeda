package wire

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"syscall"
)

// Stateful objects (docs/objects.md). Every replica serves, behind the API
// key:
//
//	GET    /flash/replica                        → {"replica": "<replica id>"}
//	POST   /flash/objects/{object}               → 201 {"object", "id"} (body: the constructor's input)
//	POST   /flash/objects/{object}/{id}/{method} → 200 the method's result (body: its input)
//	DELETE /flash/objects/{object}/{id}          → 204
//
// and the mothership's gateway serves the same paths under /{resource},
// sending an instance's calls to the replica whose id its own id starts with.
const (
	ObjectsPath = "/flash/objects"
	ReplicaPath = "/flash/replica"
	// HeaderReplica names the replica that answered an object call, so that
	// a gateway learns where instances live without asking.
	HeaderReplica = "X-Flash-Replica"
)

// ReplicaIDLen is the length of a replica id: 16 lower-case hex digits,
// random at every start of a process, so that a restarted replica is
// another replica.
const ReplicaIDLen = 16

// objectIDLen is the length of an instance id: "<replica id>.<16 hex>".
const objectIDLen = 2*ReplicaIDLen + 1

// NewReplicaID returns a fresh random replica id.
func NewReplicaID() string {
	var b [ReplicaIDLen]byte
	randomHex(b[:])
	return string(b[:])
}

// NewObjectID returns a fresh instance id held by replica. Its random part
// comes from crypto/rand: an id is what a caller needs to reach the
// instance's state.
func NewObjectID(replica string) string {
	var b [objectIDLen]byte
	var r [ReplicaIDLen / 2]byte
	rand.Read(r[:])
	copy(b[:], replica)
	b[ReplicaIDLen] = '.'
	hex.Encode(b[ReplicaIDLen+1:], r[:])
	return string(b[:])
}

// ObjectReplica returns the replica id an instance id starts with, and
// false when id is not an instance id.
func ObjectReplica(id string) (string, bool) {
	if len(id) != objectIDLen || id[ReplicaIDLen] != '.' ||
		!lowerHex(id[:ReplicaIDLen]) || !lowerHex(id[ReplicaIDLen+1:]) {
		return "", false
	}
	return id[:ReplicaIDLen], true
}

// ValidReplicaID reports whether s is a replica id.
func ValidReplicaID(s string) bool { return len(s) == ReplicaIDLen && lowerHex(s) }

// ObjectPath is the path of an object call: the constructor (id and method
// empty), an instance (method empty: DELETE closes it), or a method.
func ObjectPath(object, id, method string) string {
	var b strings.Builder
	b.Grow(len(ObjectsPath) + len(object) + len(id) + len(method) + 3)
	b.WriteString(ObjectsPath)
	b.WriteByte('/')
	b.WriteString(object)
	if id != "" {
		b.WriteByte('/')
		b.WriteString(id)
		if method != "" {
			b.WriteByte('/')
			b.WriteString(method)
		}
	}
	return b.String()
}

// ObjectRef is an instance as the constructor's answer names it; it is
// also the JSON form of a handle.
type ObjectRef struct {
	Object string `json:"object"`
	ID     string `json:"id"`
}

// ReplicaAnswer is the answer of GET /flash/replica.
type ReplicaAnswer struct {
	Replica string `json:"replica"`
}

// Refused reports whether a request failed because nothing listens at its
// address: for a call to an instance, proof that the process that held it
// is gone.
func Refused(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) && op.Op == "dial"
}
