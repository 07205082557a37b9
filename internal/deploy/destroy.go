package deploy

import (
	"context"
	"fmt"
	"time"
)

// Destroy deletes the deployment's resource group, only when it is tagged as
// ours; a missing group is success with a note.
func Destroy(ctx context.Context, opts Options) *Result {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	cfg := opts.Config
	res := &Result{Command: "destroy", VMName: cfg.VMName, ResourceGroup: cfg.ResourceGroup, Location: cfg.Location}
	start := now()
	opts.Sink.Group("destroy resource group " + cfg.ResourceGroup)
	dr, err := opts.Cloud.Destroy(ctx, cfg.ResourceGroup)
	opts.Sink.EndGroup()
	sr := StageResult{Name: "destroy", Duration: now().Sub(start)}
	switch {
	case err != nil:
		sr.Status = StatusFailed
		se := asStageError("destroy", err)
		res.Err, res.FailedStage, res.Hint = se.Err, se.Stage, se.Hint
	case dr.Deleted:
		sr.Status = StatusOK
		sr.Note = fmt.Sprintf("deleted %d resources", len(dr.Resources))
		res.Resources = dr.Resources
		res.Cleanup = fmt.Sprintf("Deleted resource group `%s` and everything in it.", cfg.ResourceGroup)
	default:
		sr.Status = StatusOK
		sr.Note = dr.Note
	}
	opts.Sink.Infof("destroy: %s %s", sr.Status, sr.Note)
	res.Stages = []StageResult{sr}
	res.Outputs = Outputs{ResourceGroup: cfg.ResourceGroup}
	res.Total = now().Sub(start)
	return res
}
