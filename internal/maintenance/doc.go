// Package maintenance holds the services that keep the job store healthy
// besides running jobs, as River's maintenance services do: the Rescuer
// gives back the jobs of workers that stopped renewing their leases, and
// the Sweeper deletes finished jobs past the retention period.
//
// Each has one lifecycle shape, Run(ctx) error: it works until ctx is done
// and returns once it has stopped (it starts no goroutine of its own). A
// failing store is logged and tried again at the next turn, never returned:
// these services must outlive a database hiccup.
package maintenance
