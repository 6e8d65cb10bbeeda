package serve

import (
	"strings"
	"testing"
	"time"
)

func TestLimitsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Limits
		err  string
	}{
		{name: "none"},
		{name: "all", env: map[string]string{"FLASH_MAX_RESULTS": "10", "FLASH_MAX_RESULT_BYTES": "2048", "FLASH_LB_CONCURRENCY": "4",
			"FLASH_LB_QUEUE": "8", "FLASH_SLOW_REQUEST_MS": "1500"},
			want: Limits{MaxResults: 10, MaxResultBytes: 2048, LBConcurrency: 4, LBQueue: 8, SlowRequest: 1500 * time.Millisecond}},
		{name: "zero", env: map[string]string{"FLASH_LB_QUEUE": "0"}, err: "FLASH_LB_QUEUE"},
		{name: "junk", env: map[string]string{"FLASH_MAX_RESULTS": "many", "FLASH_SLOW_REQUEST_MS": "-1"}, err: "FLASH_SLOW_REQUEST_MS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LimitsFromEnv(func(k string) string { return tc.env[k] })
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want one naming %q", err, tc.err)
			}
			if tc.err == "" && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
