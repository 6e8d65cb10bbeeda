package etcd_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/etcd"
	"github.com/flash-go/flash/store/storetest"
)

func TestConformance(t *testing.T) {
	c := shared.get(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, c, newPrefix())
	})
}

// Apps share a cluster under different prefixes, even nested ones.
func TestPrefixesIsolated(t *testing.T) {
	c := shared.get(t)
	base := newPrefix()
	outer, inner := openStore(t, c, base), openStore(t, c, base+"/deployments")
	ctx := t.Context()
	if _, err := inner.Publish(ctx, 0, []byte(`{"inner":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := inner.PutDeployment(ctx, store.Deployment{Resource: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := outer.Latest(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("outer Latest: err = %v, want ErrNotFound", err)
	}
	if ds, err := outer.Deployments(ctx); err != nil || len(ds) != 0 {
		t.Errorf("outer Deployments = %v, %v; want none", ds, err)
	}
	if _, err := outer.Publish(ctx, 0, []byte(`{"outer":1}`)); err != nil {
		t.Errorf("outer Publish(0): %v (the inner app's version must not count)", err)
	}
}

func TestAuth(t *testing.T) {
	c := startCluster(t, 1)
	ctx := t.Context()
	raw := rawClient(t, c)
	for _, step := range []func() error{
		func() error { _, err := raw.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := raw.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := raw.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enabling auth: %v", err)
		}
	}
	ep := c.Endpoints()[0]
	for _, u := range []string{c.URL("/a"), "etcd://root:wrong@" + ep + "/a"} {
		if s, err := etcd.Open(ctx, u); err == nil {
			s.Close()
			t.Errorf("Open(%q) with auth on: no error", u)
		}
	}
	s, err := etcd.Open(ctx, "etcd://root:rootpw@"+ep+"/a")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Publish(ctx, 0, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// The same credentials from the environment.
	t.Setenv("FLASH_ETCD_USER", "root")
	t.Setenv("FLASH_ETCD_PASSWORD", "rootpw")
	s2, err := etcd.Open(ctx, c.URL("/a"))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if p, err := s2.Latest(ctx); err != nil || p.Version != 1 {
		t.Errorf("Latest through env credentials = v%d, %v; want v1", p.Version, err)
	}
}

// Manifests beyond etcd's default request limit fit; one beyond the
// client's limit is refused with an error and changes nothing.
func TestManifestSize(t *testing.T) {
	s := openStore(t, shared.get(t), newPrefix())
	ctx := t.Context()
	big := bytes.Repeat([]byte("x"), 3<<20)
	if _, err := s.Publish(ctx, 0, big); err != nil {
		t.Fatalf("publishing 3 MiB: %v", err)
	}
	if p, err := s.Latest(ctx); err != nil || !bytes.Equal(p.Manifest, big) {
		t.Fatalf("Latest after 3 MiB: %d bytes, %v", len(p.Manifest), err)
	}
	_, err := s.Publish(ctx, 1, bytes.Repeat([]byte("y"), 20<<20))
	if err == nil {
		t.Fatal("publishing 20 MiB: no error")
	}
	t.Log(err)
	if p, err := s.Latest(ctx); err != nil || p.Version != 1 {
		t.Errorf("Latest after the refused publish = v%d, %v; want v1", p.Version, err)
	}
}
