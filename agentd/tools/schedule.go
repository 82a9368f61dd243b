package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ironclaw/ironclaw/agentd/profile"
	"github.com/ironclaw/ironclaw/agentd/wire"
)

type scheduleArgs struct {
	Action       string `json:"action"`
	Text         string `json:"text,omitempty"`
	At           string `json:"at,omitempty"`
	InMinutes    int64  `json:"in_minutes,omitempty"`
	EveryMinutes int64  `json:"every_minutes,omitempty"`
	ID           string `json:"id,omitempty"`
}

// maxAhead bounds how far ahead a schedule may be set (a year and a day).
const maxAhead = 366 * 24 * time.Hour

func init() {
	register(Tool{
		Name: "schedule",
		Description: "Reminders and recurring tasks. action=add with text and either at (RFC 3339 time, e.g. 2026-12-24T09:00:00Z) or in_minutes, " +
			"optionally every_minutes (at least 1) to repeat; when it fires you receive the text as a message and answer it. " +
			"action=list shows the schedules with their ids; action=cancel with id removes one.",
		Schema: `{"type":"object","properties":{"action":{"type":"string","enum":["add","list","cancel"]},` +
			`"text":{"type":"string","description":"what to do or say when it fires"},` +
			`"at":{"type":"string","description":"RFC 3339 time of the first firing"},` +
			`"in_minutes":{"type":"integer","description":"minutes from now of the first firing"},` +
			`"every_minutes":{"type":"integer","description":"repeat period in minutes; omit for once"},` +
			`"id":{"type":"string","description":"the schedule to cancel"}},"required":["action"],"additionalProperties":false}`,
		Permission: func(p profile.Permissions) bool { return p.Schedule },
		Run:        runSchedule,
	})
}

func runSchedule(env *Env, args json.RawMessage) (string, error) {
	var a scheduleArgs
	if err := decode(args, &a); err != nil {
		return "", err
	}
	switch a.Action {
	case "list":
		if a != (scheduleArgs{Action: "list"}) {
			return "", errors.New("list takes no other arguments")
		}
		return listSchedules(env), nil
	case "cancel":
		if a != (scheduleArgs{Action: "cancel", ID: a.ID}) {
			return "", errors.New("cancel takes only an id")
		}
		op := wire.ScheduleOp{Op: wire.OpCancel, ID: a.ID}
		if _, err := wire.Encode(op); err != nil {
			return "", err
		}
		if _, ok := env.State.Schedules[a.ID]; !ok {
			return "", fmt.Errorf("there is no schedule %q (action=list shows them)", a.ID)
		}
		delete(env.State.Schedules, a.ID)
		env.Emit(op)
		return "cancelled " + a.ID, nil
	case "add":
		return addSchedule(env, a)
	}
	return "", fmt.Errorf("action must be add, list or cancel")
}

func addSchedule(env *Env, a scheduleArgs) (string, error) {
	if a.ID != "" {
		return "", errors.New("add takes no id; one is chosen for you")
	}
	now := env.Now()
	var at time.Time
	switch {
	case a.At != "" && a.InMinutes != 0:
		return "", errors.New("give either at or in_minutes, not both")
	case a.At != "":
		t, err := time.Parse(time.RFC3339, a.At)
		if err != nil {
			return "", fmt.Errorf("at: want an RFC 3339 time like 2026-12-24T09:00:00Z: %w", err)
		}
		at = t
	case a.InMinutes > 0:
		if a.InMinutes > int64(maxAhead/time.Minute) {
			return "", errors.New("in_minutes is more than a year ahead")
		}
		at = now.Add(time.Duration(a.InMinutes) * time.Minute)
	default:
		return "", errors.New("give at or a positive in_minutes")
	}
	if !at.After(now) || at.Sub(now) > maxAhead {
		return "", fmt.Errorf("the time %s is not in the coming year", at.UTC().Format(time.RFC3339))
	}
	if a.EveryMinutes < 0 || a.EveryMinutes > int64(maxAhead/time.Minute) {
		return "", errors.New("every_minutes must be between 1 and a year's worth")
	}
	if len(env.State.Schedules) >= wire.MaxSchedules {
		return "", fmt.Errorf("there are already %d schedules, the most kept: cancel one first", wire.MaxSchedules)
	}
	op := wire.ScheduleOp{Op: wire.OpAdd, ID: env.NewID(), At: at.Unix(), Every: a.EveryMinutes * 60, Text: a.Text}
	if _, err := wire.Encode(op); err != nil {
		return "", err
	}
	env.State.Schedules[op.ID] = wire.Schedule{ID: op.ID, At: op.At, Every: op.Every, Text: op.Text}
	env.Emit(op)
	msg := fmt.Sprintf("scheduled %s for %s", op.ID, at.UTC().Format(time.RFC3339))
	if op.Every > 0 {
		msg += fmt.Sprintf(", then every %d minutes", a.EveryMinutes)
	}
	return msg, nil
}

func listSchedules(env *Env) string {
	if len(env.State.Schedules) == 0 {
		return "no schedules"
	}
	all := make([]wire.Schedule, 0, len(env.State.Schedules))
	for _, s := range env.State.Schedules {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].At < all[j].At || all[i].At == all[j].At && all[i].ID < all[j].ID })
	var b strings.Builder
	for _, s := range all {
		fmt.Fprintf(&b, "%s at %s", s.ID, time.Unix(s.At, 0).UTC().Format(time.RFC3339))
		if s.Every > 0 {
			fmt.Fprintf(&b, " every %d minutes", s.Every/60)
		}
		fmt.Fprintf(&b, ": %s\n", s.Text)
	}
	return b.String()
}
