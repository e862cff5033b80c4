package http

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/strictjson"
	"github.com/taskd/taskd/internal/tasks"
)

type batchRequest struct {
	Tasks []json.RawMessage `json:"tasks"`
	Then  json.RawMessage   `json:"then"`
}

type (
	batchCreatedJSON = client.BatchCreated
	batchTaskJSON    = client.BatchTask
	batchJSON        = client.Batch
)

func (s *server) handleBatchCreate(w http.ResponseWriter, r *http.Request) {
	qp, ok := query(w, r, "wait")
	if !ok {
		return
	}
	wait, ok := waitParam(w, qp)
	if !ok {
		return
	}
	// ?wait=0s asks for the batch form too, answered at once.
	_, waitAsked := qp["wait"]
	body, release, ok := s.readBody(w, r, s.MaxBatchBodyBytes)
	if !ok {
		return
	}
	defer release()
	batch := decodeBatch(w, body)
	if batch == nil {
		return
	}
	idem, ok := idempotency(w, r, body)
	if !ok {
		return
	}
	for try := 0; ; try++ {
		sub, err := s.Tasks.SubmitBatch(r.Context(), batch, idem)
		if err != nil {
			s.writeError(w, r, err, "")
			return
		}
		w.Header().Set("Location", "/v1/batches/"+strconv.FormatInt(sub.BatchID, 10))
		status := http.StatusOK
		if sub.Created {
			status = http.StatusCreated
		}
		if sub.Created && !waitAsked {
			writeJSON(w, http.StatusCreated, batchCreatedJSON{ID: sub.BatchID, TaskIDs: sub.TaskIDs})
			return
		}
		b, err := s.Store.Batch(r.Context(), sub.BatchID)
		if errors.Is(err, store.ErrNotFound) && try == 0 && !sub.Created {
			continue // deleted after its key was read; the request is new again
		}
		if err != nil {
			s.writeError(w, r, err, "")
			return
		}
		if !waitAsked {
			writeJSON(w, status, batchCreatedJSON{ID: b.ID, TaskIDs: b.TaskIDs})
			return
		}
		// With ?wait= the answer is the batch with its tasks' results, as
		// GET /v1/batches/{id} gives it: fan out and gather in one request.
		release()
		if !s.waitFor(w, r, b.TaskIDs, wait) {
			return
		}
		if b, err = s.Store.Batch(r.Context(), sub.BatchID); err != nil {
			s.writeError(w, r, err, "batch "+strconv.FormatInt(sub.BatchID, 10))
			return
		}
		writeJSON(w, status, toBatchJSON(b))
		return
	}
}

// decodeBatch decodes a POST /v1/batches body, reporting every item's
// problems at once. It answers the problem itself when it returns nil.
//
// A body is first decoded whole, in one strict pass (decodeBatchWhole).
// Only when that fails is it decoded again an item at a time
// (decodeBatchItems), so that the answer names each invalid item. The
// whole decode refuses whatever the item decode refuses, so a body it
// accepts would have been accepted, and decoded the same, item by item
// (TestDecodeBatchWholeAgrees, FuzzDecodeBatch).
func decodeBatch(w http.ResponseWriter, body []byte) *tasks.BatchParams {
	if b, ok := decodeBatchWhole(body); ok {
		if !checkText(w, body) {
			return nil
		}
		return b
	}
	return decodeBatchItems(w, body)
}

// decodeBatchWhole decodes body in one strictjson.UnmarshalAll call,
// which checks the keys of the items and of their backoffs as well as the
// envelope's. It reports false, with nothing answered, for any body it
// does not take: a body without tasks, too.
func decodeBatchWhole(body []byte) (*tasks.BatchParams, bool) {
	var b tasks.BatchParams
	if strictjson.UnmarshalAll(body, &b) != nil || b.Tasks == nil {
		return nil, false
	}
	return &b, true
}

// decodeBatchItems decodes the envelope, then each item on its own, so
// that every problem is reported with its item's index. It answers the
// problem itself when it returns nil.
func decodeBatchItems(w http.ResponseWriter, body []byte) *tasks.BatchParams {
	var req batchRequest
	if !decodeBody(w, body, &req) {
		return nil
	}
	if req.Tasks == nil {
		fieldProblem(w, http.StatusUnprocessableEntity, "tasks", "is required")
		return nil
	}
	params := make([]tasks.TaskParams, len(req.Tasks))
	var errs []FieldError
	for i, raw := range req.Tasks {
		if fe := decodeItem(raw, &params[i], "tasks["+strconv.Itoa(i)+"]"); fe != nil {
			errs = append(errs, *fe)
		}
	}
	batch := &tasks.BatchParams{Tasks: params}
	if len(req.Then) > 0 && string(req.Then) != "null" {
		batch.Then = &tasks.TaskParams{}
		if fe := decodeItem(req.Then, batch.Then, "then"); fe != nil {
			errs = append(errs, *fe)
		}
	}
	if errs != nil {
		writeProblem(w, Problem{Type: typeValidation, Status: http.StatusUnprocessableEntity,
			Detail: strconv.Itoa(len(errs)) + " invalid field(s); nothing was inserted", Errors: errs})
		return nil
	}
	return batch
}

// decodeItem decodes one batch item (or the callback), returning its problem (with a field
// path starting with prefix) or nil.
func decodeItem(raw json.RawMessage, v *tasks.TaskParams, prefix string) *FieldError {
	err := strictjson.Unmarshal(raw, v)
	if err == nil {
		if fe := backoffProblem(raw, v); fe != nil {
			return &FieldError{Field: prefix + "." + fe.Field, Message: fe.Message}
		}
		return nil
	}
	var jerr *strictjson.Error
	if !errors.As(err, &jerr) || jerr.Field == "" {
		return &FieldError{Field: prefix, Message: "must be a JSON object"}
	}
	return &FieldError{Field: prefix + "." + jerr.Field, Message: jerr.Message}
}

func (s *server) handleBatchGet(w http.ResponseWriter, r *http.Request) {
	id, params, ok := pathIDQuery(w, r, "wait")
	if !ok {
		return
	}
	wait, ok := waitParam(w, params)
	if !ok {
		return
	}
	b, err := s.Store.Batch(r.Context(), id)
	if err == nil && !tasks.BatchVisible(r.Context(), b) {
		err = store.ErrNotFound // as a missing batch: no existence leak
	}
	if err != nil {
		s.writeError(w, r, err, "batch "+strconv.FormatInt(id, 10))
		return
	}
	if wait > 0 {
		if !s.waitFor(w, r, b.TaskIDs, wait) {
			return
		}
		if b, err = s.Store.Batch(r.Context(), id); err != nil {
			s.writeError(w, r, err, "batch "+strconv.FormatInt(id, 10))
			return
		}
	}
	writeJSON(w, http.StatusOK, toBatchJSON(b))
}

// handleBatchCancel cancels every unfinished task of the batch and answers
// with the batch.
func (s *server) handleBatchCancel(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	b, err := s.Tasks.CancelBatch(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err, "batch "+strconv.FormatInt(id, 10))
		return
	}
	writeJSON(w, http.StatusOK, toBatchJSON(b))
}

// toBatchJSON is a batch as GET /v1/batches/{id} shows it.
func toBatchJSON(b *store.Batch) batchJSON {
	out := batchJSON{ID: b.ID, Total: len(b.TaskIDs), Counts: map[string]int{}, Done: true, Tasks: make([]batchTaskJSON, len(b.Tasks))}
	for i, t := range b.Tasks {
		out.Counts[t.State]++
		if !store.IsFinal(t.State) {
			out.Done = false
		}
		out.Tasks[i] = batchTaskJSON{ID: t.ID, State: t.State, Result: t.Result, Errors: toErrorsJSON(t.Errors)}
	}
	if b.ThenTaskID != 0 {
		out.ThenTaskID = &b.ThenTaskID
	}
	if b.ThenError != "" {
		out.ThenError = &b.ThenError
	}
	return out
}
