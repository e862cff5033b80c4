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
