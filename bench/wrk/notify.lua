-- wrk script of bench/load.sh: POST pre-signed pay notifications, each
-- thread cycling through its own file of distinct documents (one per line)
-- written by bench/gennotify.
--
--   wrk ... -s bench/wrk/notify.lua <url> -- <file prefix> [<path> [<first file>]]
--
-- Thread k (1-based) reads <file prefix>-<k-1+first file>.xml (first file
-- 0 unless given: two wrk processes of one thread each read different
-- files with 0 and 1). A thread that runs out
-- of documents starts again from its first one and counts a wrap: the
-- gateway then sees duplicates, which a ledger may answer from its records,
-- so load.sh flags any wrap. done() prints one "BENCH ..." line.

threads = {}

function setup(thread)
	table.insert(threads, thread)
	thread:set("tid", #threads)
end

function init(args)
	local prefix = args[1] or "bench/out/notify"
	path = args[2] or "/wxpay/notify"
	headers = { ["Content-Type"] = "text/xml; charset=utf-8" }
	docs = {}
	local first = tonumber(args[3] or "0")
	local file = string.format("%s-%d.xml", prefix, tid - 1 + first)
	for line in io.lines(file) do
		if line ~= "" then
			docs[#docs + 1] = line
		end
	end
	if #docs == 0 then
		error("no notifications in " .. file)
	end
	i = 0
	wraps = 0
end

function request()
	i = i + 1
	if i > #docs then
		i = 1
		wraps = wraps + 1
	end
	return wrk.format("POST", path, headers, docs[i])
end

function done(summary, latency, requests)
	local w = 0
	for _, t in ipairs(threads) do
		w = w + (t:get("wraps") or 0)
	end
	local e = summary.errors
	io.write(string.format(
		"BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d wraps=%d\n",
		math.floor(summary.requests), math.floor(summary.duration),
		math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
		e.connect, e.read, e.write, e.status, e.timeout, w))
end
