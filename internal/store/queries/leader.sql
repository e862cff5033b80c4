-- LeaderGet reads the client River elected to run its maintenance (and
-- taskd's schedules): the one row of River's river_leader while a leader is
-- elected. An expired row is a leader that stopped renewing its term (it
-- died, or lost its database); River replaces it at the next election, and
-- it leads no more meanwhile.
-- name: LeaderGet :one
SELECT leader_id FROM river_leader WHERE expires_at > now();
