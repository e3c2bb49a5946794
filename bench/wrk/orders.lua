-- wrk script of bench/load.sh: POST an order with an out_trade_no that no
-- other request of the run shares (run id, thread, counter).
--
--   wrk ... -s bench/wrk/orders.lua <url> -- <path> <api_token> <run_id>
--
-- The plain reverse_proxy baseline uses the same script with another path,
-- so that both send bodies of the same size, built the same way.
-- done() prints one machine-readable "BENCH ..." line.

threads = {}

function setup(thread)
	table.insert(threads, thread)
	thread:set("tid", #threads)
end

function init(args)
	path = args[1] or "/wxpay/orders"
	run_id = args[3] or tostring(os.time())
	headers = {
		["Content-Type"] = "application/json",
		["Authorization"] = "Bearer " .. (args[2] or ""),
	}
	counter = 0
end

function request()
	counter = counter + 1
	local no = string.format("B%sT%dN%07d", run_id, tid, counter)
	local body = '{"out_trade_no":"' .. no .. '","total_fee":1,"body":"腾讯充值中心-QQ会员充值",' ..
		'"trade_type":"JSAPI","openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}'
	return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d wraps=0\n",
		math.floor(summary.requests), math.floor(summary.duration),
		math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
		e.connect, e.read, e.write, e.status, e.timeout))
end
