-- One fixed request (a query, a floor read or insert), sent again and again.
wrk.method = "POST"
wrk.body = BENCH.body
wrk.headers["Content-Type"] = "application/json"
