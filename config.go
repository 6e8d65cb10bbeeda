package flash

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/serve"
	"github.com/flash-go/flash/store"
)

// Role is what a process of the app does.
type Role int

// The roles of SPEC §3.
const (
	// Standalone serves every function in one process; every call runs in-process.
	Standalone Role = iota
	// Child serves one resource and routes calls by the synced manifest.
	Child
	// Mothership owns the manifest, serves it and deploys the other endpoints.
	Mothership
)

func (r Role) String() string {
	switch r {
	case Child:
		return "child"
	case Mothership:
		return "mothership"
	}
	return "standalone"
}

// Config is how one process of the app runs. Main builds it from the
// environment with ConfigFromEnv; embedders fill it directly. The zero value
// runs standalone on 127.0.0.1:8080.
type Config struct {
	Role          Role
	Resource      string        // the resource a child serves (FLASH_RESOURCE_NAME, else RUNPOD_ENDPOINT_ID)
	Instance      string        // this process's instance id, reported to the mothership (FLASH_INSTANCE_ID; default host-pid)
	MothershipURL string        // a child's mothership (FLASH_MOTHERSHIP_URL, else from FLASH_MOTHERSHIP_ID)
	ManifestPath  string        // FLASH_MANIFEST_PATH
	ManifestTTL   time.Duration // FLASH_MANIFEST_TTL; default 300 s
	CacheDir      string        // FLASH_CACHE_DIR; default .flash/apps/<app>/cache
	StateURL      string        // FLASH_STATE_URL; default sqlite:///<abs>/.flash/apps/<app>/state.db
	Provider      string        // FLASH_PROVIDER: a name of Providers; default local
	APIKey        string        // FLASH_API_KEY, else RUNPOD_API_KEY; without one Run warns, and serves only on loopback
	Insecure      bool          // FLASH_INSECURE=1: serve without an API key on any address
	RunpodAPIKey  string        // RUNPOD_API_KEY: what calls to endpoints on Runpod (api.runpod.ai) carry
	RunpodBaseURL string        // RUNPOD_ENDPOINT_BASE_URL: another base of Runpod's client API (an emulator)
	Host          string        // FLASH_HOST; default 127.0.0.1
	Port          int           // PORT; default 8080; 0 picks a free port
	ListenFD      int           // FLASH_LISTEN_FD: an inherited listening socket to serve on instead of Host:Port
	MaxBody       int64         // FLASH_MAX_BODY; default 10 MiB
	MaxResources  int           // FLASH_MAX_RESOURCES: resources a mothership deploys at most; default 32, at most 1000
	Workers       int           // FLASH_WORKERS: jobs run at once per endpoint; default max(64, 4×GOMAXPROCS)
	QueueSize     int           // FLASH_QUEUE_SIZE: jobs waiting beyond those; default 1024 (full → 429)
	Logger        *slog.Logger  // default slog.Default()
	Runpod        serve.Runpod  // Runpod's worker and health variables (SPEC §5.7)
	Limits        serve.Limits  // FLASH_MAX_RESULTS, FLASH_MAX_RESULT_BYTES, FLASH_LB_CONCURRENCY, FLASH_LB_QUEUE, FLASH_SLOW_REQUEST_MS

	// Store, when set, is the mothership's state store instead of the one
	// StateURL names. Run does not close it.
	Store store.Store
	// Stores resolves StateURL by its scheme. Default DefaultStores().
	Stores store.Openers
	// Providers resolves Provider by name. Default DefaultProviders().
	Providers provider.Factories
	// Getenv reads backends' own settings (FLASH_LOG_MAX_SIZE, FLASH_ETCD_*, …).
	// ConfigFromEnv sets its getenv; the zero value means none is set.
	Getenv func(string) string

	// Listener, when set, is used instead of listening on Host:Port.
	Listener net.Listener
	// Ready, when set, receives the base URL once the process serves.
	Ready func(url string)
}

// Defaults of Config.
const (
	DefaultManifestTTL = 300 * time.Second
	DefaultPort        = 8080
	DefaultHost        = "127.0.0.1"
	DefaultMaxBody     = 10 << 20
	DefaultProvider    = "local"
)

// ConfigFromEnv reads the environment of SPEC §3 through getenv (os.Getenv
// in Main). Malformed values are errors naming the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{Getenv: getenv}
	var errs []string
	bad := func(name, val, want string) { errs = append(errs, fmt.Sprintf("%s=%q: %s", name, val, want)) }

	c.Resource = getenv("FLASH_RESOURCE_NAME")
	isMothership := strings.EqualFold(strings.TrimSpace(getenv("FLASH_IS_MOTHERSHIP")), "true")
	c.MothershipURL = strings.TrimRight(getenv("FLASH_MOTHERSHIP_URL"), "/")
	if c.MothershipURL == "" {
		if id := getenv("FLASH_MOTHERSHIP_ID"); id != "" {
			c.MothershipURL = "https://" + id + ".api.runpod.ai"
		}
	}
	switch {
	case isMothership:
		c.Role = Mothership
	case c.Resource != "":
		c.Role = Child
	case getenv("RUNPOD_ENDPOINT_ID") != "" && c.MothershipURL != "":
		c.Role, c.Resource = Child, getenv("RUNPOD_ENDPOINT_ID")
	}
	c.Instance = getenv("FLASH_INSTANCE_ID")
	c.ManifestPath = getenv("FLASH_MANIFEST_PATH")
	c.CacheDir = getenv("FLASH_CACHE_DIR")
	c.StateURL = getenv("FLASH_STATE_URL")
	c.Provider = getenv("FLASH_PROVIDER")
	if names := DefaultProviders().Names(); c.Provider != "" && !slices.Contains(names, c.Provider) {
		bad("FLASH_PROVIDER", c.Provider, "want one of "+strings.Join(names, ", "))
	}
	c.APIKey = getenv("FLASH_API_KEY")
	c.RunpodAPIKey, c.RunpodBaseURL = getenv("RUNPOD_API_KEY"), getenv("RUNPOD_ENDPOINT_BASE_URL")
	if c.APIKey == "" {
		c.APIKey = c.RunpodAPIKey
	}
	c.Host = getenv("FLASH_HOST")
	switch v := getenv("FLASH_INSECURE"); strings.ToLower(v) {
	case "", "0", "false":
	case "1", "true":
		c.Insecure = true
	default:
		bad("FLASH_INSECURE", v, "want 1 or 0")
	}
	if v := getenv("FLASH_MANIFEST_TTL"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n <= 0 {
			bad("FLASH_MANIFEST_TTL", v, "want a positive number of seconds")
		}
		c.ManifestTTL = time.Duration(n * float64(time.Second))
	}
	if v := getenv("PORT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 65535 {
			bad("PORT", v, "want a port number 0-65535")
		}
		c.Port = n
	} else {
		c.Port = DefaultPort
	}
	if v := getenv("FLASH_MAX_BODY"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			bad("FLASH_MAX_BODY", v, "want a positive number of bytes")
		}
		c.MaxBody = n
	}
	for _, knob := range []struct {
		name string
		dst  *int
	}{{"FLASH_WORKERS", &c.Workers}, {"FLASH_QUEUE_SIZE", &c.QueueSize}, {"FLASH_LISTEN_FD", &c.ListenFD}} {
		if v := getenv(knob.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				bad(knob.name, v, "want a positive integer")
			}
			*knob.dst = n
		}
	}
	if v := getenv("FLASH_MAX_RESOURCES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > mothership.MaxResourcesLimit {
			bad("FLASH_MAX_RESOURCES", v, fmt.Sprintf("want an integer 1-%d", mothership.MaxResourcesLimit))
		}
		c.MaxResources = n
	}
	rp, err := serve.RunpodFromEnv(getenv)
	if err != nil {
		errs = append(errs, err.Error())
	}
	c.Runpod = rp
	if c.Limits, err = serve.LimitsFromEnv(getenv); err != nil {
		errs = append(errs, err.Error())
	}
	if rp.Worker != nil && getenv("PORT") == "" {
		c.Port = 0 // a queue worker takes no traffic: several on one machine must not collide
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// withDefaults fills the zero fields; per-app paths are those of app under
// the working directory's .flash (internal/layout).
func (c Config) withDefaults(app string) Config {
	if c.CacheDir == "" {
		c.CacheDir = layout.In("").App(app).Cache()
	}
	if c.ManifestTTL == 0 {
		c.ManifestTTL = DefaultManifestTTL
	}
	if c.Provider == "" {
		c.Provider = DefaultProvider
	}
	if c.Stores == nil {
		c.Stores = DefaultStores()
	}
	if c.Providers == nil {
		c.Providers = DefaultProviders()
	}
	if c.Getenv == nil {
		c.Getenv = func(string) string { return "" }
	}
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
