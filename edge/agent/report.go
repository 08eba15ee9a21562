package agent

import (
	"time"

	"github.com/skybridge-mq/skybridge/cloud/api"
)

// scheduleReport arms the next periodic report.
func (a *Agent) scheduleReport(now time.Time) {
	a.reportAt = now.Add(a.jitter(a.cfg.ReportEvery))
}

// noteChange asks for a report soon (changes within ReportDelay share
// one).
func (a *Agent) noteChange(now time.Time) {
	if a.changed.IsZero() {
		a.changed = now.Add(a.cfg.ReportDelay)
	}
}

// report appends a status record.
func (a *Agent) report(now time.Time) {
	a.changed = time.Time{}
	a.scheduleReport(now)
	if a.id == nil {
		return
	}
	a.appendRecord(api.KindStatus, a.Status(now), now)
}

// Status returns the node's status as it reports it.
func (a *Agent) Status(now time.Time) api.Status {
	s := api.Status{AppliedVersion: a.applied, DesiredVersion: a.desiredVersion(), Apps: []api.AppStatus{},
		Info: a.info, Usage: a.usage, Outbox: a.OutboxStats(), CertExpires: a.CertExpires(), Boot: a.boot,
		Devices: a.devices, Gateway: a.gateway}
	for _, name := range a.names() {
		ap := a.apps[name]
		st := api.AppStatus{Name: name, Revision: ap.spec.Revision, State: ap.state, Restarts: ap.restarts,
			LastExit: ap.lastExit, Healthy: ap.healthy, PID: ap.pid, RSSBytes: ap.rss, CPUPercent: ap.cpu}
		s.Apps = append(s.Apps, st)
	}
	return s
}
