"""Realistic chapter 01 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("flatten_images returns a copy", task="ch01.view",
            edits=[("return x.view(x.size(0), -1)", "return x.view(x.size(0), -1).clone()")],
            message="returned a copy, not a view"),
    Mistake("flatten_images flattens the batch dimension too", task="ch01.view",
            edits=[("return x.view(x.size(0), -1)", "return x.view(-1)")],
            message="flattening the batch dimension too"),
    Mistake("outer_sum transposed", task="ch01.broadcast",
            edits=[("return col[:, None] + row[None, :]", "return row[:, None] + col[None, :]")],
            message="transposed table"),
    Mistake("outer_sum loops in Python", task="ch01.broadcast",
            edits=[("    return col[:, None] + row[None, :]\n",
                    "    out = torch.empty(len(col), len(row))\n"
                    "    for i in range(len(col)):\n"
                    "        for j in range(len(row)):\n"
                    "            out[i, j] = col[i] + row[j]\n"
                    "    return out\n")],
            message="loops in Python"),
    Mistake("pick gathers on dim 0", task="ch01.gather",
            edits=[("scores.gather(1, index.unsqueeze(1))", "scores.gather(0, index.unsqueeze(1))")],
            message="gathered along dim 0"),
    Mistake("pick with advanced indexing", task="ch01.gather",
            edits=[("return scores.gather(1, index.unsqueeze(1)).squeeze(1)",
                    "return scores[torch.arange(len(index)), index]")],
            message="does not use Tensor.gather"),
    Mistake("count_correct: argmax without dim", task="ch01.accuracy",
            edits=[("predictions = logits.argmax(dim=1)", "predictions = logits.argmax()")],
            message="argmax without dim"),
    Mistake("count_correct returns a tensor", task="ch01.accuracy",
            edits=[("return int((predictions == labels).sum().item())", "return (predictions == labels).sum()")],
            message="returned a Tensor"),
    Mistake("as_tensor_shared copies with torch.tensor", task="ch01.numpy",
            edits=[("return torch.from_numpy(a)", "return torch.tensor(a)")],
            message="torch.from_numpy(a) shares"),
    Mistake("as_tensor_shared converts to float32", task="ch01.numpy",
            edits=[("return torch.from_numpy(a)", "return torch.from_numpy(a).float()")],
            message="converting the dtype makes a copy"),
    Mistake("add_inplace_ rebinds x to a new tensor", task="ch01.inplace",
            edits=[("    x.add_(y)\n    return x\n", "    x = x + y\n    return x\n")],
            message="not changed in place"),
    # returns the public example's answer whatever the input: the public tests pass, the hidden
    # tests (held-out logits) must catch it, so it cannot be caught publicly by design
    Mistake("hard-codes the public answers", task="ch01.accuracy",
            edits=[("return int((predictions == labels).sum().item())", "return 2")],
            message="on held-out", public=False),
]

VARIANTS = [
    Variant("reshape, unsqueeze, torch.gather, torch.as_tensor, +=", edits=[
        ("return x.view(x.size(0), -1)", "return x.reshape(x.shape[0], -1)"),
        ("return col[:, None] + row[None, :]", "return col.unsqueeze(1) + row.unsqueeze(0)"),
        ("return scores.gather(1, index.unsqueeze(1)).squeeze(1)",
         "return torch.gather(scores, 1, index.view(-1, 1)).squeeze(-1)"),
        ("return torch.from_numpy(a)", "return torch.as_tensor(a)"),
        ("    x.add_(y)\n    return x\n", "    x += y\n    return x\n"),
    ]),
    Variant("functional calls: torch.flatten, torch.add, torch.argmax, torch.eq", edits=[
        ("return x.view(x.size(0), -1)", "return torch.flatten(x, start_dim=1)"),
        ("return col[:, None] + row[None, :]", "return torch.add(col.view(-1, 1), row.view(1, -1))"),
        ("return scores.gather(1, index.unsqueeze(1)).squeeze(1)",
         "return torch.take_along_dim(scores, index[:, None], dim=1)[:, 0]"),
        ("predictions = logits.argmax(dim=1)", "predictions = torch.argmax(logits, 1)"),
        ("return int((predictions == labels).sum().item())", "return torch.eq(predictions, labels).sum().item()"),
        ("return torch.from_numpy(a)", "return torch.asarray(a)"),
        ("    x.add_(y)\n    return x\n", "    torch.add(x, y, out=x)\n    return x\n"),
    ]),
    Variant("explicit loop for the count, copy_ for the update", edits=[
        ("return int((predictions == labels).sum().item())",
         "correct = 0\n    for p, t in zip(predictions.tolist(), labels.tolist()):\n"
         "        correct += int(p == t)\n    return correct"),
        ("    x.add_(y)\n    return x\n", "    x.copy_(x + y)\n    return x\n"),
        ("return x.view(x.size(0), -1)", "n = len(x)\n    return x.view(n, -1)"),
    ]),
]
