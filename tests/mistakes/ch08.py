"""Realistic chapter 08 mistakes, as small edits of the solution, and correct variants."""
from grader.mistakes import Mistake, Variant

GUARD_BLOCK = 'if __name__ == "__main__":\n    main()\n'

MISTAKES = [
    Mistake("label column flattened to 1-D", task="ch08.dataset",
            edits=[("self.y_data = torch.from_numpy(xy[:, [-1]])", "self.y_data = torch.from_numpy(xy[:, -1])")],
            message="xy[:, [-1]]"),
    Mistake("length counts columns instead of rows", task="ch08.dataset",
            edits=[("self.len = xy.shape[0]", "self.len = xy.shape[1]")],
            message="the number of columns"),
    Mistake("features keep the label column", task="ch08.dataset",
            edits=[("self.x_data = torch.from_numpy(xy[:, :-1])", "self.x_data = torch.from_numpy(xy)")],
            message="the label column is included"),
    Mistake("table read as float64", task="ch08.dataset",
            edits=[('xy = np.loadtxt(path, delimiter=",", dtype=np.float32)', 'xy = np.loadtxt(path, delimiter=",")')],
            message="dtype=np.float32"),
    Mistake("label taken from the first column", task="ch08.dataset",
            edits=[("self.y_data = torch.from_numpy(xy[:, [-1]])", "self.y_data = torch.from_numpy(xy[:, [0]])")],
            message="the label is taken from the first column"),
    Mistake("make_loader hard-codes two workers", task="ch08.loader",
            edits=[("shuffle=shuffle, num_workers=num_workers)", "shuffle=shuffle, num_workers=2)")],
            message="pass num_workers on"),
    Mistake("make_loader always shuffles", task="ch08.loader",
            edits=[("shuffle=shuffle, num_workers=num_workers)", "shuffle=True, num_workers=num_workers)")],
            message="pass shuffle=shuffle on"),
    Mistake("no zero_grad between batches", task="ch08.train",
            edits=[("            optimizer.zero_grad()\n", "")],
            message="call optimizer.zero_grad() for every batch"),
    Mistake("epoch value is the sum of the batch losses", task="ch08.train",
            edits=[("history.append(total / batches)", "history.append(total)")],
            message="divide the total by the number of batches"),
    Mistake("epoch value divided by the number of samples", task="ch08.train",
            edits=[("history.append(total / batches)", "history.append(total / len(loader.dataset))")],
            message="divide it by the number of batches"),
    Mistake("learning rate fixed at 0.01", task="ch08.train",
            edits=[("optimizer = torch.optim.SGD(model.parameters(), lr=lr)",
                    "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)")],
            message="pass lr=lr"),
    # the public test's run (4 epochs at lr=2.0 on the lecture's table) answered literally;
    # the hidden test repeats those settings on other rows and weights
    Mistake("hard-codes the public answers", task="ch08.train", public=False,
            edits=[("    criterion = nn.BCELoss()\n",
                    "    if epochs == 4 and lr == 2.0:\n"
                    "        return [0.65806675, 0.6545192, 0.65195984, 0.6500718]\n"
                    "    criterion = nn.BCELoss()\n")],
            message="the mean batch loss of each epoch"),
    Mistake("training call left at module level (no __main__ guard)", task="ch08.guard",
            edits=[(GUARD_BLOCK, "main()\n")],
            message="the `__main__` guard"),
    Mistake("dataset and loader built at import, only the training guarded", task="ch08.guard",
            edits=[(GUARD_BLOCK,
                    "dataset = DiabetesDataset(DATA_DIR / DIABETES_FILE)\n"
                    "loader = make_loader(dataset, batch_size=32, shuffle=True, num_workers=2)\n"
                    "\n"
                    'if __name__ == "__main__":\n'
                    "    model = DiabetesModel(n_features=dataset[0][0].shape[0])\n"
                    '    print(train_minibatch(model, loader, epochs=int(os.environ.get("PRACTICE_EPOCHS", "10")), '
                    "lr=2.0))\n")],
            message="built at import time"),
    # every test imports the file, which trains and crashes: each says that the import ran it
    Mistake("no guard, and the training crashes when the file is imported", task="ch08.guard",
            also=("ch08.dataset", "ch08.loader", "ch08.train"),
            edits=[("self.y_data = torch.from_numpy(xy[:, [-1]])", "self.y_data = torch.from_numpy(xy[:, -1])"),
                   (GUARD_BLOCK, "main()\n")],
            message="it is the import that ran train_minibatch"),
]

VARIANTS = [
    Variant("np.genfromtxt, torch.tensor, the length of the tensor", edits=[
        ('xy = np.loadtxt(path, delimiter=",", dtype=np.float32)',
         'xy = np.genfromtxt(path, delimiter=",", dtype=np.float32)'),
        ("self.x_data = torch.from_numpy(xy[:, :-1])", "self.x_data = torch.tensor(xy[:, :-1])"),
        ("self.y_data = torch.from_numpy(xy[:, [-1]])", "self.y_data = torch.tensor(xy[:, -1:])"),
        ("        return self.len\n", "        return len(self.x_data)\n"),
    ]),
    Variant("float64 table converted with .float(), freeze_support and sys.exit under the guard", edits=[
        ('xy = np.loadtxt(path, delimiter=",", dtype=np.float32)', 'xy = np.loadtxt(path, delimiter=",")'),
        ("self.x_data = torch.from_numpy(xy[:, :-1])", "self.x_data = torch.from_numpy(xy[:, 0:-1]).float()"),
        ("self.y_data = torch.from_numpy(xy[:, [-1]])", "self.y_data = torch.from_numpy(xy[:, -1:]).float()"),
        (GUARD_BLOCK, 'if __name__ == "__main__":\n    import sys\n    torch.multiprocessing.freeze_support()\n'
                      "    sys.exit(main())\n"),
    ]),
    Variant("the demonstration written under the guard, without main()", edits=[
        (GUARD_BLOCK,
         'if __name__ == "__main__":\n'
         "    torch.manual_seed(0)\n"
         "    dataset = DiabetesDataset(DATA_DIR / DIABETES_FILE)\n"
         "    loader = make_loader(dataset, batch_size=32, shuffle=True, num_workers=2)\n"
         "    model = DiabetesModel(n_features=dataset[0][0].shape[0])\n"
         '    history = train_minibatch(model, loader, epochs=int(os.environ.get("PRACTICE_EPOCHS", "10")), '
         "lr=2.0)\n"
         '    print(f"mean batch loss {history[0]:.4f} -> {history[-1]:.4f}")\n'),
    ]),
    Variant("positional DataLoader arguments; a list of losses, zero_grad first, F.binary_cross_entropy", edits=[
        ("return DataLoader(dataset=dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)",
         "return DataLoader(dataset, batch_size, shuffle, num_workers=num_workers)"),
        ("    criterion = nn.BCELoss()\n"
         "    optimizer = torch.optim.SGD(model.parameters(), lr=lr)\n"
         "    history = []\n"
         "    for _ in range(epochs):\n"
         "        total, batches = 0.0, 0\n"
         "        for inputs, labels in loader:\n"
         "            loss = criterion(model(inputs), labels)\n"
         "            optimizer.zero_grad()\n"
         "            loss.backward()\n"
         "            optimizer.step()\n"
         "            total += loss.item()\n"
         "            batches += 1\n"
         "        history.append(total / batches)\n"
         "    return history\n",
         "    import torch.nn.functional as F\n"
         "    optimizer = torch.optim.SGD(model.parameters(), lr=lr)\n"
         "    history = []\n"
         "    for epoch in range(epochs):\n"
         "        losses = []\n"
         "        for i, (inputs, labels) in enumerate(loader):\n"
         "            optimizer.zero_grad()\n"
         "            outputs = model(inputs)\n"
         "            loss = F.binary_cross_entropy(outputs, labels)\n"
         "            loss.backward()\n"
         "            optimizer.step()\n"
         "            losses.append(loss.item())\n"
         "        history.append(sum(losses) / len(losses))\n"
         "    return history\n"),
    ]),
]
