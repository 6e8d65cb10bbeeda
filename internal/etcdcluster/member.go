package etcdcluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

// memberEnv carries a member's settings, as JSON, to the process that runs it.
const memberEnv = "FLASH_ETCD_MEMBER"

// memberConfig is what one member process needs to know.
type memberConfig struct {
	Name           string `json:"name"`
	Dir            string `json:"dir"` // the member's own directory; data in Dir/data
	ClientURL      string `json:"client_url"`
	PeerURL        string `json:"peer_url"`
	InitialCluster string `json:"initial_cluster"` // name=peerURL,…
	Token          string `json:"token"`
	NoFsync        bool   `json:"no_fsync"`
}

// RunIfMember turns this process into an etcd member when it was started as
// one by Start, and then never returns; otherwise it returns at once. Call it
// first thing in main (or TestMain) of any binary that Options.Executable names.
func RunIfMember() {
	raw := os.Getenv(memberEnv)
	if raw == "" {
		return
	}
	var mc memberConfig
	if err := json.Unmarshal([]byte(raw), &mc); err != nil {
		fmt.Fprintf(os.Stderr, "etcd member: bad %s: %v\n", memberEnv, err)
		os.Exit(2)
	}
	if err := runMember(mc); err != nil {
		fmt.Fprintf(os.Stderr, "etcd member %s: %v\n", mc.Name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runMember serves until SIGTERM/SIGINT, the server fails, or standard input
// closes (the parent died: the member must not outlive it).
func runMember(mc memberConfig) error {
	cfg := embed.NewConfig()
	cfg.Name = mc.Name
	cfg.Dir = filepath.Join(mc.Dir, "data")
	client, err := url.Parse(mc.ClientURL)
	if err != nil {
		return err
	}
	peer, err := url.Parse(mc.PeerURL)
	if err != nil {
		return err
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = mc.InitialCluster
	cfg.InitialClusterToken = mc.Token
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored once the data directory exists
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(mc.Dir, "etcd.log")}
	cfg.UnsafeNoFsync = mc.NoFsync
	cfg.MaxRequestBytes = 32 << 20 // a publish carries a manifest twice; see store/etcd
	// Keep the last 10000 revisions: the store's history lives in its own
	// keys, so old revisions only serve watches that fell far behind.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = embed.CompactorModeRevision, "10000"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	defer e.Close()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	orphaned := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(orphaned)
	}()
	select {
	case <-sig:
		return nil
	case <-orphaned:
		return nil
	case err := <-e.Err():
		return err
	}
}
