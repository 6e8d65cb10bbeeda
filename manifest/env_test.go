package manifest

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestReservedEnv: a resource's env may not override flash's or the
// platform's variables, nor use a name exec cannot pass on.
func TestReservedEnv(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		problem    string // "" = valid
	}{
		{key: "MODEL", value: "small"},
		{key: "RUNPOD_LOG_LEVEL", value: "INFO"}, // a knob users set
		{key: "flash_x", value: "1", problem: `resources.r.env.flash_x: flash_x is flash's own variable`},
		{key: "FLASH_API_KEY", value: "other", problem: "resources.r.env.FLASH_API_KEY: FLASH_API_KEY is flash's own variable"},
		{key: "FLASH_MOTHERSHIP_URL", value: "http://x", problem: "FLASH_MOTHERSHIP_URL is flash's own"},
		{key: "PORT", value: "1", problem: "resources.r.env.PORT: PORT is set by the platform"},
		{key: "PORT_HEALTH", value: "1", problem: "PORT_HEALTH is set by the platform"},
		{key: "RUNPOD_ENDPOINT_ID", value: "x", problem: "RUNPOD_ENDPOINT_ID is set by the platform"},
		{key: "RUNPOD_AI_API_KEY", value: "x", problem: "RUNPOD_AI_API_KEY is set by the platform"},
		{key: "", value: "x", problem: `resources.r.env[""]: an environment variable name must not be empty`},
		{key: "A=B", value: "x", problem: `resources.r.env["A=B"]: environment variable name "A=B" must not contain '='`},
		{key: "OK", value: "a\x00b", problem: "the value of OK must not contain a NUL byte"},
	} {
		env, _ := json.Marshal(map[string]string{tc.key: tc.value})
		doc := `{"version":"1.0","resources":{"r":{"resource_type":"LiveServerless","env":` + string(env) + `}}}`
		_, err := Parse([]byte(doc))
		switch {
		case tc.problem == "" && err != nil:
			t.Errorf("env %q rejected: %v", tc.key, err)
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("env %q: %v, want a problem containing %q", tc.key, err, tc.problem)
		}
	}
}
