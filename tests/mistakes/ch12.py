"""Realistic chapter 12 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

CELL = "return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)"

MISTAKES = [
    Mistake("tanh missing in the cell", task="ch12.cell",
            edits=[(CELL, "return x @ w_ih.T + b_ih + h @ w_hh.T + b_hh")],
            message="tanh is missing"),
    Mistake("w_ih and w_hh swapped", task="ch12.cell",
            edits=[(CELL, "return torch.tanh(x @ w_hh.T + b_ih + h @ w_ih.T + b_hh)")],
            message="w_ih and w_hh are swapped"),
    Mistake("weights not transposed", task="ch12.cell",
            edits=[(CELL, "return torch.tanh(x @ w_ih + b_ih + h @ w_hh + b_hh)")],
            message="not transposed"),
    Mistake("one_hot left as integers", task="ch12.one_hot",
            edits=[("out = torch.zeros(len(indices), num_classes)",
                    "out = torch.zeros(len(indices), num_classes, dtype=torch.long)"),
                   ("out[torch.arange(len(indices)), indices] = 1.0",
                    "out[torch.arange(len(indices)), indices] = 1")],
            message="convert with .float()"),
    Mistake("hidden state not carried between steps", task="ch12.unroll",
            edits=[("        hidden = cell(x, hidden)\n        states.append(hidden)\n",
                    "        states.append(cell(x, hidden))\n")],
            message="not carried between steps"),
    Mistake("run_cell returns only the last state", task="ch12.unroll",
            edits=[("    return torch.stack(states)\n", "    return hidden\n")],
            message="only the last hidden state"),
    Mistake("hello loss not summed over the sequence", task="ch12.hello",
            edits=[("loss = loss + criterion(hidden, label)", "loss = criterion(hidden, label)")],
            message="add up"),
    Mistake("hello without zero_grad", task="ch12.hello",
            edits=[("        optimizer.zero_grad()\n        hidden = model.init_hidden()\n",
                    "        hidden = model.init_hidden()\n")],
            message="call optimizer.zero_grad() every epoch"),
    Mistake("hidden state kept across epochs", task="ch12.hello",
            edits=[("        optimizer.zero_grad()\n        hidden = model.init_hidden()\n",
                    "        optimizer.zero_grad()\n        hidden = model.init_hidden() if epoch == 0 else hidden\n")],
            message="start every epoch from"),
    Mistake("embedding output not flattened", task="ch12.embedding",
            edits=[("return x.view(-1, self.num_class)", "return x")],
            message="flatten it to [B * T, 4]"),
    Mistake("initial hidden state created on the CPU", task="ch12.embedding",
            edits=[("hidden = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device=x.device)",
                    "hidden = torch.zeros(self.num_layers, x.size(0), self.hidden_size)")],
            message="device=x.device"),
    # the lecture's seq-first layout leaking into the batch-first model: the embedded input
    # transposed to [T, B, E] although self.rnn was built with batch_first=True
    Mistake("embedded input transposed to time-first", task="ch12.embedding",
            edits=[("        x = self.emb(x)\n", "        x = self.emb(x).transpose(0, 1)\n")],
            message="do not transpose"),
    Mistake("embedded input transposed, hidden state sized to match", task="ch12.embedding",
            edits=[("hidden = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device=x.device)",
                    "hidden = torch.zeros(self.num_layers, x.size(1), self.hidden_size, device=x.device)"),
                   ("        x = self.emb(x)\n", "        x = self.emb(x).transpose(0, 1)\n")],
            message="do not transpose"),
    Mistake("scores flattened time-major", task="ch12.embedding",
            edits=[("return x.view(-1, self.num_class)", "return x.transpose(0, 1).reshape(-1, self.num_class)")],
            message="time-major"),
    Mistake("hard-codes the public answers", task="ch12.one_hot",
            edits=[("    out = torch.zeros(len(indices), num_classes)\n"
                    "    out[torch.arange(len(indices)), indices] = 1.0\n"
                    "    return out\n",
                    "    known = {(1, 0, 2, 2, 3): [[0., 1., 0., 0.], [1., 0., 0., 0.], [0., 0., 1., 0.],\n"
                    "                               [0., 0., 1., 0.], [0., 0., 0., 1.]],\n"
                    "             (3, 1, 2, 3, 2): [[0., 0., 0., 1.], [0., 1., 0., 0.], [0., 0., 1., 0.],\n"
                    "                               [0., 0., 0., 1.], [0., 0., 1., 0.]]}\n"
                    "    zeros = [[0.] * num_classes] * len(indices)\n"
                    "    return torch.tensor(known.get(tuple(indices.tolist()), zeros))\n")],
            message="one_hot(", public=False),  # passes every public test by construction; held-out indices catch it
]

VARIANTS = [
    Variant("functional cell, F.one_hot, index loop, += loss, max idiom", edits=[
        ("from torch import nn\n", "from torch import nn\nimport torch.nn.functional as F\n"),
        (CELL, "return torch.tanh(F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh))"),
        ("    out = torch.zeros(len(indices), num_classes)\n"
         "    out[torch.arange(len(indices)), indices] = 1.0\n"
         "    return out\n",
         "    return F.one_hot(indices, num_classes).float()\n"),
        ("    states = []\n    for x in inputs:\n        hidden = cell(x, hidden)\n        states.append(hidden)\n",
         "    states = []\n    for t in range(inputs.size(0)):\n        hidden = cell(inputs[t], hidden)\n"
         "        states.append(hidden)\n"),
        ("            loss = loss + criterion(hidden, label)\n"
         "            predicted += IDX2CHAR[hidden.argmax(dim=1).item()]\n",
         "            loss += F.cross_entropy(hidden, label)\n"
         "            _, idx = hidden.max(dim=1)\n"
         "            predicted += IDX2CHAR[idx.item()]\n"),
    ]),
    Variant("addmm cell, preallocated states, losses stacked, default RNN state, reshape", edits=[
        (CELL, "return torch.tanh(torch.addmm(b_ih, x, w_ih.t()) + torch.addmm(b_hh, h, w_hh.t()))"),
        ("    states = []\n    for x in inputs:\n        hidden = cell(x, hidden)\n        states.append(hidden)\n"
         "    return torch.stack(states)\n",
         "    out = None\n    for t, x in enumerate(inputs):\n        hidden = cell(x, hidden)\n"
         "        if out is None:\n            out = hidden.new_zeros(len(inputs), *hidden.shape)\n"
         "        out[t] = hidden\n    return out\n"),
        ("        loss = 0\n", "        losses = []\n"),
        ("            loss = loss + criterion(hidden, label)\n",
         "            losses.append(criterion(hidden, label))\n"),
        ("        loss.backward()\n        optimizer.step()\n        if verbose:",
         "        loss = torch.stack(losses).sum()\n"
         "        loss.backward()\n        optimizer.step()\n        if verbose:"),
        ("        hidden = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device=x.device)\n"
         "        x = self.emb(x)\n        x, _ = self.rnn(x, hidden)\n",
         "        x, _ = self.rnn(self.emb(x))\n"),
        ("return x.view(-1, self.num_class)", "return x.reshape(-1, x.size(-1))"),
    ]),
    Variant("hidden state on the parameters' device, flatten", edits=[
        ("hidden = torch.zeros(self.num_layers, x.size(0), self.hidden_size, device=x.device)",
         "hidden = torch.zeros(self.num_layers, len(x), self.hidden_size, device=self.fc.weight.device)"),
        ("return x.view(-1, self.num_class)", "return torch.flatten(x, 0, 1)"),
    ]),
]
