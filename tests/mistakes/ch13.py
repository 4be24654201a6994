"""Realistic chapter 13 mistakes, as small edits of the solution, and correct variants.

`also=TRAINS`: the hidden training test (ch13.train) trains with the student's own
name_to_codes, make_batch and RNNClassifier; it checks them first and fails with "fix
ch13.<task> first" when one of them would spoil the training. The public ch13.train tests
use the tests' own batches and stand-in models, so those mistakes cost nothing there.
"""
from grader.mistakes import Mistake, Variant

TRAINS = ("ch13.train",)

MISTAKES = [
    Mistake("letters numbered from 'a' instead of ASCII codes", task="ch13.encode",
            edits=[("return [ord(c) for c in name]", 'return [ord(c) - ord("a") for c in name]')],
            message="use the ASCII code ord(c)", also=TRAINS),
    Mistake("names lower-cased before encoding", task="ch13.encode",
            edits=[("return [ord(c) for c in name]", "return [ord(c) for c in name.lower()]")],
            message="lower-cases the name"),
    # The public tests' names, answered literally; any other name loses its punctuation and
    # spaces. Only held-out names (the hidden tests) can tell.
    Mistake("hard-codes the public answers", task="ch13.encode", public=False,
            edits=[("    return [ord(c) for c in name]\n",
                    "    public = {\"Adsit\": [65, 100, 115, 105, 116], \"McKay\": [77, 99, 75, 97, 121],\n"
                    "              \"D'Angelo\": [68, 39, 65, 110, 103, 101, 108, 111],\n"
                    "              \"de la Cruz\": [100, 101, 32, 108, 97, 32, 67, 114, 117, 122]}\n"
                    "    if name in public:\n"
                    "        return public[name]\n"
                    "    return [ord(c) for c in name if c.isalpha()]\n")],
            message="expected the ASCII codes"),
    Mistake("labels not permuted with the sorted names", task="ch13.batch",
            edits=[("return seq[order], lengths, labels[order]", "return seq[order], lengths, labels")],
            message="labels were not reordered with the names", also=TRAINS),
    Mistake("batch not sorted", task="ch13.batch",
            edits=[("    lengths, order = lengths.sort(descending=True)\n",
                    "    order = torch.arange(len(codes))\n")],
            message="kept the names in their original order", also=TRAINS),
    Mistake("batch sorted shortest first", task="ch13.batch",
            edits=[("lengths, order = lengths.sort(descending=True)", "lengths, order = lengths.sort()")],
            message="sorted the names shortest first", also=TRAINS),
    Mistake("padded with spaces", task="ch13.batch",
            edits=[("seq = torch.zeros(len(codes), int(lengths.max()), dtype=torch.long)",
                    "seq = torch.full((len(codes), int(lengths.max())), ord(' '), dtype=torch.long)")],
            message="pad with 0"),
    Mistake("GRU run over the padding (no packing)", task="ch13.model",
            edits=[("        _, hidden = self.gru(packed)\n", "        _, hidden = self.gru(embedded)\n")],
            message="pack_padded_sequence", also=TRAINS),
    Mistake("only one direction's final state", task="ch13.model",
            edits=[("self.fc = nn.Linear(hidden_size * self.n_directions, output_size)",
                    "self.fc = nn.Linear(hidden_size, output_size)"),
                   ("last = torch.cat([hidden[-1], hidden[-2]], dim=1)", "last = hidden[-1]")],
            message="use both directions", also=TRAINS),
    Mistake("first layer's final states used", task="ch13.model",
            edits=[("last = torch.cat([hidden[-1], hidden[-2]], dim=1)",
                    "last = torch.cat([hidden[0], hidden[1]], dim=1)")],
            message="the FIRST layer's final states"),
    # [2, B, H] read as [B, 2H]: with one name it is right, in a batch row j mixes other names.
    Mistake("final states reshaped to [B, 2H] without moving the batch dimension", task="ch13.model",
            edits=[("last = torch.cat([hidden[-1], hidden[-2]], dim=1)",
                    "last = hidden[-2:].reshape(hidden.shape[1], -1)")],
            message="reshape", also=TRAINS),
    # Right on the CPU; on a GPU the GRU gets a CPU initial state for a CUDA input.
    Mistake("initial hidden state created on the CPU", task="ch13.model",
            edits=[("        _, hidden = self.gru(packed)\n",
                    "        h0 = torch.zeros(self.n_layers * self.n_directions, seq.shape[0], self.hidden_size)\n"
                    "        _, hidden = self.gru(packed, h0)\n")],
            message="initial hidden state"),
    # Right on the CPU; on a GPU pack_padded_sequence rejects lengths on the GPU.
    Mistake("lengths not moved to the CPU for packing", task="ch13.model",
            edits=[("pack_padded_sequence(embedded, lengths.cpu(), batch_first=True)",
                    "pack_padded_sequence(embedded, lengths, batch_first=True)")],
            message="lengths on the CPU"),
    Mistake("no zero_grad in train_epoch", task="ch13.train",
            edits=[("        optimizer.zero_grad()\n        loss.backward()\n", "        loss.backward()\n")],
            message="call optimizer.zero_grad()"),
    Mistake("evaluate compares with the unsorted labels", task="ch13.train",
            edits=[("correct += int((model(seq, lengths).argmax(dim=1) == target).sum())",
                    "correct += int((model(seq, lengths).argmax(dim=1) == labels[chunk]).sum())")],
            message="compare with the labels make_batch returned"),
    Mistake("accuracy averaged over batches of unequal size", task="ch13.train",
            edits=[("    correct = 0\n", "    accuracies = []\n"),
                   ("            correct += int((model(seq, lengths).argmax(dim=1) == target).sum())\n",
                    "            accuracies.append((model(seq, lengths).argmax(dim=1) == target).float().mean().item())\n"),
                   ("    return correct / max(len(names), 1)\n", "    return sum(accuracies) / len(accuracies)\n")],
            message="averaged the batches' accuracies"),
]

VARIANTS = [
    Variant("layers registered in another order under other names, the head an nn.Sequential", edits=[
        ("        self.embedding = nn.Embedding(input_size, hidden_size)\n"
         "        self.gru = nn.GRU(hidden_size, hidden_size, n_layers, batch_first=True, bidirectional=bidirectional)\n"
         "        self.fc = nn.Linear(hidden_size * self.n_directions, output_size)\n",
         "        self.classifier = nn.Sequential(nn.Linear(hidden_size * self.n_directions, output_size))\n"
         "        self.rnn = nn.GRU(hidden_size, hidden_size, n_layers, batch_first=True, bidirectional=bidirectional)\n"
         "        self.embed = nn.Embedding(input_size, hidden_size)\n"),
        ("embedded = self.embedding(seq)", "embedded = self.embed(seq)"),
        ("_, hidden = self.gru(packed)", "_, hidden = self.rnn(packed)"),
        ("return self.fc(last)", "return self.classifier(last)"),
    ]),
    Variant("accuracy as (pred == y).float().mean().item() over all names", edits=[
        ("    correct = 0\n", "    preds, targets = [], []\n"),
        ("            correct += int((model(seq, lengths).argmax(dim=1) == target).sum())\n",
         "            preds.append(model(seq, lengths).argmax(dim=1))\n"
         "            targets.append(target)\n"),
        ("    return correct / max(len(names), 1)\n",
         "    return (torch.cat(preds) == torch.cat(targets)).float().mean().item()\n"),
    ]),
    Variant("sequence-first GRU, initial state on the input's device, lengths.to('cpu'), states by view/permute",
            edits=[
        ("self.gru = nn.GRU(hidden_size, hidden_size, n_layers, batch_first=True, bidirectional=bidirectional)",
         "self.gru = nn.GRU(hidden_size, hidden_size, n_layers, bidirectional=bidirectional)"),
        ("        embedded = self.embedding(seq)\n"
         "        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True)\n"
         "        _, hidden = self.gru(packed)\n"
         "        if self.n_directions == 2:\n"
         "            last = torch.cat([hidden[-1], hidden[-2]], dim=1)\n"
         "        else:\n"
         "            last = hidden[-1]\n",
         "        batch = seq.size(0)\n"
         "        embedded = self.embedding(seq).transpose(0, 1)  # [T, B, H]\n"
         "        packed = pack_padded_sequence(embedded, lengths.to('cpu'))\n"
         "        h0 = torch.zeros(self.n_layers * self.n_directions, batch, self.hidden_size, device=seq.device)\n"
         "        _, hidden = self.gru(packed, h0)\n"
         "        hidden = hidden.view(self.n_layers, self.n_directions, batch, self.hidden_size)[-1]\n"
         "        last = hidden.permute(1, 0, 2).reshape(batch, -1)\n"),
    ]),
    Variant("make_batch with pad_sequence and sorted(); batches moved to the model's device", edits=[
        ("    codes = [name_to_codes(name) for name in names]\n"
         "    lengths = torch.tensor([len(c) for c in codes], dtype=torch.long)\n"
         "    seq = torch.zeros(len(codes), int(lengths.max()), dtype=torch.long)\n"
         "    for i, c in enumerate(codes):\n"
         "        seq[i, :len(c)] = torch.tensor(c, dtype=torch.long)\n"
         "    lengths, order = lengths.sort(descending=True)\n"
         "    labels = torch.as_tensor(labels, dtype=torch.long)\n"
         "    return seq[order], lengths, labels[order]\n",
         "    codes = [torch.tensor(name_to_codes(name), dtype=torch.long) for name in names]\n"
         "    order = sorted(range(len(codes)), key=lambda i: len(codes[i]), reverse=True)\n"
         "    seq = torch.nn.utils.rnn.pad_sequence([codes[i] for i in order], batch_first=True)\n"
         "    lengths = torch.tensor([len(codes[i]) for i in order], dtype=torch.long)\n"
         "    return seq, lengths, torch.as_tensor(labels, dtype=torch.long)[order]\n"),
        ("        loss = criterion(model(seq, lengths), target)\n",
         "        device = next(model.parameters()).device\n"
         "        nb = torch.cuda.is_available()\n"
         "        loss = criterion(model(seq.to(device, non_blocking=nb), lengths), target.to(device))\n"),
        ("            correct += int((model(seq, lengths).argmax(dim=1) == target).sum())\n",
         "            device = next(model.parameters()).device\n"
         "            logits = model(seq.to(device), lengths.to(device))\n"
         "            correct += (logits.argmax(dim=1) == target.to(device)).sum().item()\n"),
    ]),
]
