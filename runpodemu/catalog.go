package runpodemu

// Runpod's fixed enumerations (RUNPOD.md §2.6). The live catalog routes are
// not emulated; these tables are what the emulator validates against.

// gpuPools maps each serverless pool id to the GPU type ids it holds
// (Flash's table, RUNPOD.md §2.6).
var gpuPools = map[string][]string{
	"AMPERE_16":  {"NVIDIA RTX A4000", "NVIDIA RTX A4500", "NVIDIA RTX 4000 Ada Generation", "NVIDIA RTX 2000 Ada Generation"},
	"AMPERE_24":  {"NVIDIA RTX A5000", "NVIDIA L4", "NVIDIA GeForce RTX 3090"},
	"ADA_24":     {"NVIDIA GeForce RTX 4090"},
	"ADA_32_PRO": {"NVIDIA GeForce RTX 5090"},
	"AMPERE_48":  {"NVIDIA A40", "NVIDIA RTX A6000"},
	"ADA_48_PRO": {"NVIDIA RTX 6000 Ada Generation", "NVIDIA L40", "NVIDIA L40S"},
	"AMPERE_80":  {"NVIDIA A100 80GB PCIe", "NVIDIA A100-SXM4-80GB"},
	"ADA_80_PRO": {"NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL"},
	"HOPPER_141": {"NVIDIA H200"},
}

var poolIDs = []string{"AMPERE_16", "AMPERE_24", "ADA_24", "ADA_32_PRO", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO", "HOPPER_141"}

// cpuRAMPerVCPU is the memory per vCPU of each CPU flavor, in GB.
var cpuRAMPerVCPU = map[string]int{"cpu3c": 2, "cpu3g": 4, "cpu5c": 2, "cpu5g": 4}

var cpuFlavors = []string{"cpu3c", "cpu3g", "cpu5c", "cpu5g"}

var dataCenters = []string{"EU-RO-1", "CA-MTL-1", "EU-SE-1", "US-IL-1", "EUR-IS-1", "EU-CZ-1", "US-TX-3",
	"EUR-IS-2", "US-KS-2", "US-GA-2", "US-WA-1", "US-TX-1", "CA-MTL-3", "EU-NL-1", "US-TX-4", "US-CA-2",
	"US-NC-1", "OC-AU-1", "US-DE-1", "EUR-IS-3", "CA-MTL-2", "AP-JP-1", "EUR-NO-1", "EU-FR-1", "US-KS-3", "US-GA-1"}

var (
	endpointTypes  = []string{typeQueue, typeLB}
	scalerTypes    = []string{scaleQueueDelay, scaleRequestCount}
	flashbootModes = []string{"OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"}
	categories     = []string{"NVIDIA", "AMD", "CPU"}
	volumeTypes    = []string{"STANDARD", "HIGH_PERFORMANCE"}
)

const (
	typeQueue         = "QUEUE"
	typeLB            = "LOAD_BALANCER"
	scaleQueueDelay   = "QUEUE_DELAY"
	scaleRequestCount = "REQUEST_COUNT"
)
