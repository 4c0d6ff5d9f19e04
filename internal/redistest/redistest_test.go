package redistest_test

import (
	"testing"
	"time"

	"github.com/picluster/picluster/internal/redistest"
)

// The cluster helper starts a 3-master cluster with replicas and finds the
// master of a key's slot; after that master is killed its replica takes
// over.
func TestClusterFailsOver(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	m := c.MasterOf("{job}:state")
	m.Stop()
	c.WaitHealthy(3, 20*time.Second)
	if m2 := c.MasterOf("{job}:state"); m2 == m {
		t.Fatal("the killed master still serves the slot")
	}
}

// The sentinel helper's sentinels promote the replica when the master dies.
func TestSentinelFailsOver(t *testing.T) {
	s := redistest.StartSentinel(t)
	s.Master.Stop()
	s.WaitFailover(30 * time.Second)
}
