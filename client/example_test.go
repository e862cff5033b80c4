package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/taskd/taskd/client"
)

// Submit a task and poll it until it is finished.
func Example() {
	c, err := client.New("http://127.0.0.1:8080", client.Config{HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	kind := "double"
	task, _, err := c.Submit(ctx, client.TaskRequest{Kind: &kind, Args: json.RawMessage(`{"value":21}`)},
		client.SubmitOptions{IdempotencyKey: "order-1234"})
	if err != nil {
		log.Fatal(err)
	}
	for task.FinishedAt == nil {
		time.Sleep(100 * time.Millisecond)
		if task, err = c.Get(ctx, task.ID); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(task.State, string(task.Result))
}

// An external worker: claim tasks of a kind declared with run: external,
// do the work, and complete or fail each.
func ExampleClient_Claim() {
	c, err := client.New("http://127.0.0.1:8080", client.Config{HTTPClient: &http.Client{Timeout: 90 * time.Second}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for {
		tasks, err := c.Claim(ctx, client.ClaimRequest{Kinds: []string{"transcode"}, Max: new(10), Wait: new("30s"), Worker: new("transcoder-1")})
		if err != nil {
			log.Fatal(err)
		}
		for _, t := range tasks {
			var args struct {
				Path string `json:"path"`
			}
			if err := json.Unmarshal(t.Args, &args); err != nil {
				// Retrying cannot help: discard the task at once.
				_, _ = c.Fail(ctx, t.ID, t.Lease, "bad args: "+err.Error(), client.FailRequest{Permanent: new(true)})
				continue
			}
			if _, err := c.Complete(ctx, t.ID, t.Lease, json.RawMessage(`{"done":true}`)); client.IsStatus(err, http.StatusConflict) {
				log.Printf("task %d: lease lost (expired or claimed again); its result was not saved", t.ID)
			}
		}
	}
}
