/* MCP tools and prompts: upstream's five sandbox tools with their input
 * schemas, this project's file tools, and upstream's two prompts. */
#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"
#include "server/mcp.h"

/* JSON texts parsed on use: schemas read best as JSON, not as json_pack calls. */
static const struct mcp_tool tools[] = {
	{"sandbox_start", "sandbox.start", true,
	 "Start a sandbox (a microVM) with the given name and optional configuration. "
	 "Starting a running sandbox changes nothing.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of the sandbox: 1-63 letters, "
	 "digits, '_' or '-'\"},"
	 "\"config\":{\"type\":\"object\",\"description\":\"Configuration; may be omitted for a "
	 "sandbox that is already configured\",\"properties\":{"
	 "\"image\":{\"type\":\"string\",\"enum\":[\"microsandbox/python\",\"microsandbox/node\"],"
	 "\"description\":\"Image to run\"},"
	 "\"memory\":{\"type\":\"integer\",\"description\":\"Memory in MiB\"},"
	 "\"cpus\":{\"type\":\"integer\",\"description\":\"Number of virtual CPUs\"},"
	 "\"volumes\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":"
	 "\"host:guest path pairs\"},"
	 "\"ports\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":"
	 "\"host:guest port pairs\"},"
	 "\"envs\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":"
	 "\"KEY=value environment variables\"}}}},"
	 "\"required\":[\"sandbox\"]}"},
	{"sandbox_stop", "sandbox.stop", true, "Stop a running sandbox.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of the sandbox to stop\"}},"
	 "\"required\":[\"sandbox\"]}"},
	{"sandbox_run_code", "sandbox.repl.run", false,
	 "Run code in the sandbox's persistent REPL (state is kept between calls) and return "
	 "its output.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of a started sandbox\"},"
	 "\"code\":{\"type\":\"string\",\"description\":\"The code to run\"},"
	 "\"language\":{\"type\":\"string\",\"description\":\"python or nodejs\"}},"
	 "\"required\":[\"sandbox\",\"code\",\"language\"]}"},
	{"sandbox_run_command", "sandbox.command.run", false,
	 "Run a program in the sandbox (no shell) and return its exit code and output.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of a started sandbox\"},"
	 "\"command\":{\"type\":\"string\",\"description\":\"The program to run\"},"
	 "\"args\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":"
	 "\"Its arguments\"}},"
	 "\"required\":[\"sandbox\",\"command\"]}"},
	{"sandbox_get_metrics", "sandbox.metrics.get", true,
	 "Report whether sandboxes run and their CPU, memory and disk use; all sandboxes when "
	 "no name is given.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of one sandbox (optional)\"}}}"},
	{"sandbox_write_file", "sandbox.file.write", true,
	 "Write a file inside a started sandbox (up to 1 MiB; replaces an existing file).",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of a started sandbox\"},"
	 "\"path\":{\"type\":\"string\",\"description\":\"Absolute path inside the sandbox\"},"
	 "\"content\":{\"type\":\"string\",\"description\":\"The file's contents\"},"
	 "\"encoding\":{\"type\":\"string\",\"enum\":[\"utf-8\",\"base64\"],\"description\":"
	 "\"How content is encoded (default utf-8)\"}},"
	 "\"required\":[\"sandbox\",\"path\",\"content\"]}"},
	{"sandbox_read_file", "sandbox.file.read", true,
	 "Read a file (up to 1 MiB) from a started sandbox; binary files come back as base64.",
	 "{\"type\":\"object\",\"properties\":{"
	 "\"sandbox\":{\"type\":\"string\",\"description\":\"Name of a started sandbox\"},"
	 "\"path\":{\"type\":\"string\",\"description\":\"Absolute path inside the sandbox\"}},"
	 "\"required\":[\"sandbox\",\"path\"]}"},
};

const struct mcp_tool *mcp_tool_find(const char *name)
{
	for (size_t i = 0; name && i < MSB_ARRAY_SIZE(tools); i++)
		if (strcmp(tools[i].name, name) == 0)
			return &tools[i];
	return NULL;
}

json_t *mcp_tools_json(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < MSB_ARRAY_SIZE(tools); i++) {
		json_t *schema = json_loads(tools[i].schema, 0, NULL);
		json_array_append_new(a, json_pack("{s:s,s:s,s:o}", "name", tools[i].name,
						   "description", tools[i].description,
						   "inputSchema", schema ? schema : json_object()));
	}
	return json_pack("{s:o}", "tools", a);
}

static const struct {
	const char *name, *language, *image, *fallback;
} prompts[] = {
	{"create_python_sandbox", "Python", "microsandbox/python", "python-sandbox"},
	{"create_node_sandbox", "Node.js", "microsandbox/node", "node-sandbox"},
};

json_t *mcp_prompts_json(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < MSB_ARRAY_SIZE(prompts); i++) {
		char desc[160];
		snprintf(desc, sizeof(desc), "Create a %s sandbox and get ready to run code in it",
			 prompts[i].language);
		json_t *arg = json_pack("{s:s,s:s,s:b}", "name", "sandbox_name", "description",
					"Name for the new sandbox", "required", 1);
		json_array_append_new(a, json_pack("{s:s,s:s,s:[o]}", "name", prompts[i].name,
						   "description", desc, "arguments", arg));
	}
	return json_pack("{s:o}", "prompts", a);
}

int mcp_prompt_get(json_t *params, json_t **result, struct msb_err *err)
{
	json_t *jn = json_object_get(params, "name");
	if (!json_is_string(jn))
		return msb_err_set(err, MSB_EK_USAGE, 0, "Invalid params: missing field `name`");
	const char *name = json_string_value(jn);
	for (size_t i = 0; i < MSB_ARRAY_SIZE(prompts); i++) {
		if (strcmp(prompts[i].name, name) != 0)
			continue;
		const char *sb = prompts[i].fallback;
		json_t *args = json_object_get(params, "arguments");
		json_t *v = json_object_get(args, "sandbox_name");
		if (json_is_string(v) && json_string_length(v) > 0)
			sb = json_string_value(v);
		char desc[160], text[1024];
		snprintf(desc, sizeof(desc), "Create a %s sandbox", prompts[i].language);
		snprintf(text, sizeof(text),
			 "Please create a %s sandbox named '%.100s'. Call the sandbox_start tool "
			 "with sandbox '%.100s' and config {\"image\": \"%s\", \"memory\": 512, "
			 "\"cpus\": 1, \"workdir\": \"/workspace\"}. When it has started, run code "
			 "in "
			 "it with sandbox_run_code, and stop it with sandbox_stop when done.",
			 prompts[i].language, sb, sb, prompts[i].image);
		*result = json_pack("{s:s,s:[{s:s,s:{s:s,s:s}}]}", "description", desc, "messages",
				    "role", "user", "content", "type", "text", "text", text);
		return 0;
	}
	return msb_err_set(err, MSB_EK_NOT_FOUND, 0, "Unknown prompt: %.100s", name);
}
