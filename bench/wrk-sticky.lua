-- Same script for every case: each request carries an x-user-id that varies
-- (counter mod 10000), so Sluice's sticky assignment is exercised on every
-- request. Only `request` is defined (no `response`), to keep wrk lean.
local counter = 0

request = function()
  counter = counter + 1
  wrk.headers["x-user-id"] = "user-" .. (counter % 10000)
  return wrk.format(nil, nil)
end
